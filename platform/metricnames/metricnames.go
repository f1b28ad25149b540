// Package metricnames lists the metric names the three services export, as
// their collectors describe them (a vector without label values yet counts),
// so that the dashboard and the alert rules can be checked against them.
package metricnames

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopstock/loopstock/services/averager"
	"github.com/loopstock/loopstock/services/integerapi"
	"github.com/loopstock/loopstock/services/integergen"
)

// Set is a set of fully qualified metric names; it is a
// prometheus.Registerer, so any collector can add the names it describes.
type Set map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Register adds the names c describes, without gathering.
func (s Set) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			s[m[1]] = true
		}
	}
	return nil
}

// MustRegister adds the names every collector describes.
func (s Set) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		s.Register(c)
	}
}

// Unregister is a no-op: names are only ever added.
func (s Set) Unregister(prometheus.Collector) bool { return false }

// Services is the set of the metrics integer-gen, integeraverage-cal and
// integer-api define.
func Services() Set {
	s := Set{}
	integergen.DescribeMetrics(s)
	averager.DescribeMetrics(s)
	integerapi.DescribeMetrics(s)
	return s
}
