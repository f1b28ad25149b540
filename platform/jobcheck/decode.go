// Package jobcheck reads the Nomad job files in nomad/ the way Nomad's
// HCL2 parser does — variables and var files, locals, dynamic blocks — and
// decodes them into github.com/hashicorp/nomad/api types, reporting an
// unknown block or attribute with its file and line. The tests in nomad/
// build their checks on it (Nomad's own parser is not an open-source
// module any more).
package jobcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"github.com/zclconf/go-cty/cty/gocty"
)

// File is one decoded job file.
type File struct {
	Job       *api.Job
	Variables map[string]cty.Value
}

var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: "job", LabelNames: []string{"id"}},
}}

var variableSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "type"}, {Name: "default"}, {Name: "description"},
}, Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}}}

// fileFunc is Nomad's file(): a file's content, relative to the job file.
func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := os.ReadFile(filepath.Join(dir, args[0].AsString()))
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

var functions = map[string]function.Function{
	"concat": stdlib.ConcatFunc, "format": stdlib.FormatFunc, "join": stdlib.JoinFunc, "length": stdlib.LengthFunc,
	"lower": stdlib.LowerFunc, "upper": stdlib.UpperFunc, "contains": stdlib.ContainsFunc, "split": stdlib.SplitFunc,
	"coalesce": stdlib.CoalesceFunc, "max": stdlib.MaxFunc, "min": stdlib.MinFunc, "trimsuffix": stdlib.TrimSuffixFunc,
}

// Parse decodes a job file's source with the values of varFiles (HCL files
// of name = value) applied over the variables' defaults.
func Parse(filename string, src []byte, varFiles map[string][]byte) (*File, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	content, d := f.Body.Content(topSchema)
	if diags = append(diags, d...); diags.HasErrors() {
		return nil, diags
	}
	vars, d := variables(content.Blocks, varFiles)
	if diags = append(diags, d...); diags.HasErrors() {
		return nil, diags
	}
	funcs := map[string]function.Function{"file": fileFunc(filepath.Dir(filename))}
	for k, v := range functions {
		funcs[k] = v
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}, Functions: funcs}
	locals := map[string]cty.Value{}
	var jobs []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "locals":
			attrs, d := b.Body.JustAttributes()
			diags = append(diags, d...)
			for name, a := range attrs {
				v, d := a.Expr.Value(withRuntime(ctx, a.Expr))
				diags = append(diags, d...)
				locals[name] = v
			}
		case "job":
			jobs = append(jobs, b)
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	if len(jobs) != 1 {
		return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("%d job blocks, want one", len(jobs)),
			Subject: &hcl.Range{Filename: filename, Start: hcl.Pos{Line: 1, Column: 1}}})
	}
	job := &api.Job{}
	id := jobs[0].Labels[0]
	job.ID = &id
	diags = append(diags, decodeBody(dynblock.Expand(jobs[0].Body, ctx), ctx, reflect.ValueOf(job).Elem())...)
	return &File{Job: job, Variables: vars}, diags
}

func variables(blocks hcl.Blocks, varFiles map[string][]byte) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vals := map[string]cty.Value{}
	types := map[string]cty.Type{}
	for _, b := range blocks {
		if b.Type != "variable" {
			continue
		}
		name := b.Labels[0]
		c, d := b.Body.Content(variableSchema)
		diags = append(diags, d...)
		types[name] = cty.DynamicPseudoType
		if a, ok := c.Attributes["type"]; ok {
			t, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			types[name] = t
		}
		vals[name] = cty.NullVal(types[name])
		if a, ok := c.Attributes["default"]; ok {
			v, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			vals[name] = v
		}
	}
	for fn, src := range varFiles {
		f, d := hclsyntax.ParseConfig(src, fn, hcl.Pos{Line: 1, Column: 1})
		if diags = append(diags, d...); d.HasErrors() {
			continue
		}
		attrs, d := f.Body.JustAttributes()
		diags = append(diags, d...)
		for name, a := range attrs {
			if _, ok := types[name]; !ok {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undefined variable",
					Detail: fmt.Sprintf("%s sets %q, which this job does not declare", fn, name), Subject: a.Range.Ptr()})
				continue
			}
			v, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			vals[name] = v
		}
	}
	for name, v := range vals {
		cv, err := convert.Convert(v, types[name])
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid variable value",
				Detail: fmt.Sprintf("variable %q: %v", name, err)})
			continue
		}
		if cv.IsNull() {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing variable",
				Detail: fmt.Sprintf("variable %q has no default and no value", name)})
		}
		vals[name] = cv
	}
	return vals, diags
}

// withRuntime adds the names Nomad resolves at run time so expressions
// that use them evaluate: NOMAD_* variables get sample values of their
// shape (so flags can be checked), node a sample node, the rest (attr,
// meta, …) unknown values.
func withRuntime(ctx *hcl.EvalContext, expr hcl.Expression) *hcl.EvalContext {
	child := ctx.NewChild()
	child.Variables = map[string]cty.Value{}
	for _, tr := range expr.Variables() {
		root := tr.RootName()
		if root != "var" && root != "local" {
			child.Variables[root] = RuntimeSample(root)
		}
	}
	return child
}

// RuntimeSample is the value the checks give a name Nomad resolves at run time.
func RuntimeSample(root string) cty.Value {
	switch {
	case strings.HasPrefix(root, "NOMAD_ADDR_"):
		return cty.StringVal("10.0.0.5:25000")
	case strings.HasPrefix(root, "NOMAD_IP_"):
		return cty.StringVal("10.0.0.5")
	case strings.HasPrefix(root, "NOMAD_PORT_"):
		return cty.StringVal("25000")
	case root == "NOMAD_ALLOC_ID":
		return cty.StringVal("5f0e8c2a-1d3b-4c5e-9f7a-0b1c2d3e4f50")
	case strings.HasPrefix(root, "NOMAD_"):
		return cty.StringVal("/sample/" + strings.ToLower(strings.TrimPrefix(root, "NOMAD_")))
	case root == "node":
		id := cty.ObjectVal(map[string]cty.Value{"id": cty.StringVal("node-id-1"), "name": cty.StringVal("node-1")})
		return cty.ObjectVal(map[string]cty.Value{"unique": id, "datacenter": cty.StringVal("dc1")})
	}
	return cty.DynamicVal
}

type field struct {
	index int
	name  string
	kind  string // label, attr, block
}

func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("hcl")
		if tag == "" {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "label", "block":
		case "remain":
			continue
		default:
			kind = "attr"
		}
		out = append(out, field{i, name, kind})
	}
	return out
}

func schemaOf(t reflect.Type) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, f := range fields(t) {
		switch f.kind {
		case "attr":
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: f.name})
		case "block":
			s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: f.name, LabelNames: labelNames(elemStruct(t.Field(f.index).Type))})
		}
	}
	return s
}

func elemStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	return t
}

func labelNames(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for _, f := range fields(t) {
		if f.kind == "label" {
			out = append(out, f.name)
		}
	}
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

// decodeBody fills the struct v from body; unknown attributes and blocks
// are errors with their position.
func decodeBody(body hcl.Body, ctx *hcl.EvalContext, v reflect.Value) hcl.Diagnostics {
	t := v.Type()
	content, diags := body.Content(schemaOf(t))
	for _, f := range fields(t) {
		fv := v.Field(f.index)
		switch f.kind {
		case "attr":
			if a, ok := content.Attributes[f.name]; ok {
				diags = append(diags, setAttr(a, ctx, fv)...)
			}
		case "block":
			for _, b := range content.Blocks.OfType(f.name) {
				diags = append(diags, setBlock(b, ctx, fv)...)
			}
		}
	}
	return diags
}

func setBlock(b *hcl.Block, ctx *hcl.EvalContext, fv reflect.Value) hcl.Diagnostics {
	t := fv.Type()
	switch {
	case t.Kind() == reflect.Map && elemStruct(t).Kind() == reflect.Struct:
		// blocks keyed by their label (group volumes)
		elem := reflect.New(elemStruct(t))
		diags := fillBlock(b, ctx, elem.Elem())
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(t))
		}
		if t.Elem().Kind() != reflect.Pointer {
			elem = elem.Elem()
		}
		fv.SetMapIndex(reflect.ValueOf(b.Labels[0]), elem)
		return diags
	case t.Kind() == reflect.Map:
		// env, meta, config: free-form attributes. Read again through
		// Content: in a dynamic block's content, only Content gives the
		// attributes the iterator (artifact.value) in scope.
		attrs, diags := b.Body.JustAttributes()
		schema := &hcl.BodySchema{}
		for name := range attrs {
			schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: name})
		}
		if c, d := b.Body.Content(schema); !d.HasErrors() {
			attrs = c.Attributes
		}
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(t))
		}
		for name, a := range attrs {
			val, d := a.Expr.Value(withRuntime(ctx, a.Expr))
			diags = append(diags, d...)
			if t.Elem().Kind() == reflect.String {
				s := "<runtime>"
				if val.IsWhollyKnown() && val.Type() == cty.String {
					s = val.AsString()
				} else if val.IsWhollyKnown() {
					if sv, err := convert.Convert(val, cty.String); err == nil {
						s = sv.AsString()
					}
				}
				fv.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(s))
			} else {
				fv.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(any(val)))
			}
		}
		return diags
	case t.Kind() == reflect.Slice:
		elem := reflect.New(elemStruct(t)).Elem()
		diags := fillBlock(b, ctx, elem)
		if t.Elem().Kind() == reflect.Pointer {
			fv.Set(reflect.Append(fv, elem.Addr()))
		} else {
			fv.Set(reflect.Append(fv, elem))
		}
		return diags
	case t.Kind() == reflect.Pointer:
		elem := reflect.New(t.Elem())
		diags := fillBlock(b, ctx, elem.Elem())
		fv.Set(elem)
		return diags
	default:
		return fillBlock(b, ctx, fv)
	}
}

func fillBlock(b *hcl.Block, ctx *hcl.EvalContext, v reflect.Value) hcl.Diagnostics {
	li := 0
	for _, f := range fields(v.Type()) {
		if f.kind == "label" && li < len(b.Labels) {
			setString(v.Field(f.index), b.Labels[li])
			li++
		}
	}
	return decodeBody(b.Body, ctx, v)
}

func setString(fv reflect.Value, s string) {
	if fv.Kind() == reflect.Pointer {
		fv.Set(reflect.ValueOf(&s))
		return
	}
	fv.SetString(s)
}

func setAttr(a *hcl.Attribute, ctx *hcl.EvalContext, fv reflect.Value) hcl.Diagnostics {
	val, diags := a.Expr.Value(withRuntime(ctx, a.Expr))
	if diags.HasErrors() || !val.IsWhollyKnown() || val.IsNull() {
		return diags // known only at run time: nothing to check here
	}
	target := fv
	if fv.Kind() == reflect.Pointer {
		target = reflect.New(fv.Type().Elem()).Elem()
	}
	bad := func(err error) hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for " + a.Name,
			Detail: err.Error(), Subject: a.Range.Ptr()})
	}
	if target.Type() == durationType {
		sv, err := convert.Convert(val, cty.String)
		if err != nil {
			return bad(err)
		}
		d, err := time.ParseDuration(sv.AsString())
		if err != nil {
			return bad(err)
		}
		target.SetInt(int64(d))
	} else {
		if ty, err := gocty.ImpliedType(target.Interface()); err == nil {
			cv, err := convert.Convert(val, ty) // a tuple into a list, a number into a string…
			if err != nil {
				return bad(err)
			}
			val = cv
		}
		if err := gocty.FromCtyValue(val, target.Addr().Interface()); err != nil {
			return bad(err)
		}
	}
	if fv.Kind() == reflect.Pointer {
		fv.Set(target.Addr())
	}
	return diags
}
