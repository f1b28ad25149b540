package nomad

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A cluster's Consul as nomad-run meets it: HTTPS with a certificate that
// names server.dc1.consul, not the address, and ACLs. The fake nomad
// reports every job placed and healthy; the addresses nomad-run prints must
// come from this Consul's health API.
func TestNomadRunReadsAddressesFromAClustersConsul(t *testing.T) {
	dir := t.TempDir()
	const token = "operator-consul-token"
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "server.dc1.consul"},
		DNSNames: []string{"server.dc1.consul"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	var denied atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Consul-Token") != token {
			denied.Add(1)
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
		if !ok || r.URL.Query()["passing"] == nil {
			http.NotFound(w, r)
			return
		}
		// Compact, as a Consul agent that is not in dev mode answers; the
		// node's address differs from the service's.
		port := 20000 + len(name)
		fmt.Fprintf(w, `[{"Node":{"ID":"n1","Node":"client-1","Address":"10.0.0.21","TaggedAddresses":{"lan":"10.0.0.21"},"Meta":{}},`+
			`"Service":{"ID":"%[1]s-1","Service":"%[1]s","Tags":[],"Address":"10.0.0.31","TaggedAddresses":{"lan_ipv4":{"Address":"10.0.0.31","Port":%[2]d}},"Meta":{"tcp_port":"4160"},"Port":%[2]d},`+
			`"Checks":[{"Node":"client-1","CheckID":"serfHealth","Status":"passing"}]}]`, name, port)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()

	fake := `#!/bin/sh
case "$*" in
  "node status"*) echo "client-1 client-2 " ;;
  *NodeName*) ;;
  "var put"* | "job run"*) ;;
  "operator api"*) echo '{"Summary":{"g":{"Queued":0,"Starting":0,"Running":1}}}' ;;
  "job allocs"*) echo "g:running:true " ;;
  *) echo "unexpected: nomad $*" >&2; exit 1 ;;
esac
`
	os.WriteFile(filepath.Join(dir, "nomad"), []byte(fake), 0o755)
	cmd := exec.Command("../scripts/nomad-run")
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "HOME=" + dir, "NOMAD_ADDR=https://127.0.0.1:9",
		"CONSUL_HTTP_ADDR=" + srv.URL, "CONSUL_TLS_SERVER_NAME=server.dc1.consul", "CONSUL_CACERT=" + ca,
		"CONSUL_HTTP_TOKEN=" + token, "CONSUL_TOKEN=services-token", "CONSUL_CA=" + ca, "NOMAD_RUN_TIMEOUT=10"}
	for k, v := range operatorEnv {
		cmd.Env = append(cmd.Env, "NOMAD_VAR_"+k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nomad-run: %v (requests without the token: %d)\n%s", err, denied.Load(), out)
	}
	for _, want := range []string{"nsqadmin    http://10.0.0.31:20008", "API         http://10.0.0.31:20011/v1/integers",
		"Grafana     http://10.0.0.31:20007/d/loopstock"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nomad-run's output lacks %q:\n%s", want, out)
		}
	}
}
