package server_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/cert/certtest"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

// apiClient calls the relay's management API with one account's key.
type apiClient struct {
	t    *testing.T
	base string
	key  string
}

func (r *relayEnv) api(accountID string) *apiClient {
	r.t.Helper()
	k, err := r.Store.CreateAPIKey(r.t.Context(), accountID, "test", "")
	if err != nil {
		r.t.Fatal(err)
	}
	return &apiClient{t: r.t, base: "http://" + r.Srv.APIAddr().String(), key: k.Token}
}

// do sends a request and decodes the JSON answer into a map; it returns the status.
func (c *apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		if s, ok := body.(string); ok {
			b = []byte(s)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			c.t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, out
}

func (c *apiClient) must(want int, method, path string, body any) map[string]any {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s = %d %v, want %d", method, path, code, out, want)
	}
	return out
}

func pemOf(c tls.Certificate) (certPEM, keyPEM string) {
	var b strings.Builder
	for _, der := range c.Certificate {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der}) //nolint:errcheck
	}
	der, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	return b.String(), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// newAPIRelay starts a relay with the management API; its certificate also covers names.
func newAPIRelay(t *testing.T, names ...string) *relayEnv {
	o := servertest.Options{Log: testLogger(t), APIAddr: "127.0.0.1:0"}
	if len(names) > 0 {
		o.Names = append([]string{servertest.Domain, "*." + servertest.Domain, "127.0.0.1"}, names...)
	}
	return &relayEnv{Relay: servertest.Start(t, o), t: t, transport: "quic"}
}

func TestAPIAuthAndErrors(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	anon := &apiClient{t: t, base: c.base}
	if code, out := anon.do("GET", "/reserved_domains", nil); code != 401 || out["error_code"] != "FERRY_AUTH_REQUIRED" {
		t.Errorf("no key: %d %v, want 401 FERRY_AUTH_REQUIRED", code, out)
	}
	bad := &apiClient{t: t, base: c.base, key: "fyk_nope"}
	if code, out := bad.do("GET", "/reserved_domains", nil); code != 401 || out["error_code"] != "FERRY_AUTH_FAILED" {
		t.Errorf("bad key: %d %v, want 401 FERRY_AUTH_FAILED", code, out)
	}
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"domain": "bad_name.test"}, "domain"},
		{map[string]any{"domain": "ok.test", "colour": "red"}, "colour"},
		{map[string]any{"domain": 42}, "domain"},
		{map[string]any{"domain": "ok.test", "certificate_id": "cert_nope"}, "certificate_id"},
		{map[string]any{"domain": "ok.test", "certificate_management_policy": map[string]string{"authority": "letsencrypt"}}, "certificate_management_policy"},
	} {
		code, out := c.do("POST", "/reserved_domains", tc.body)
		details, _ := out["details"].(map[string]any)
		if code != 400 || details["field"] != tc.field || !strings.Contains(fmt.Sprint(out["msg"]), tc.field) {
			t.Errorf("POST /reserved_domains %v = %d %v, want 400 naming field %q", tc.body, code, out, tc.field)
		}
	}
	if code, out := c.do("POST", "/reserved_domains", "{not json"); code != 400 || out["error_code"] != "FERRY_BAD_REQUEST" {
		t.Errorf("bad JSON: %d %v, want 400 FERRY_BAD_REQUEST", code, out)
	}
	if code, _ := c.do("GET", "/nope", nil); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

// TestAPIAccountsAreIsolated: one account's key never sees or changes another's objects.
func TestAPIAccountsAreIsolated(t *testing.T) {
	r := newAPIRelay(t)
	a := r.api(r.Account)
	otherID, _ := r.NewAccount(t, "other")
	b := r.api(otherID)

	d := a.must(201, "POST", "/reserved_domains", map[string]any{"domain": "*.acme-a.test", "description": "A's"})
	id := d["id"].(string)
	if d["domain"] != "*.acme-a.test" || d["cname_target"] != servertest.Domain || d["certificate"] != nil {
		t.Errorf("created domain = %v, want domain *.acme-a.test, cname_target %s, certificate null", d, servertest.Domain)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if code, _ := b.do(m, "/reserved_domains/"+id, nil); code != 404 {
			t.Errorf("other account %s %s = %d, want 404", m, id, code)
		}
	}
	if code, _ := b.do("PATCH", "/reserved_domains/"+id, map[string]any{"description": "mine now"}); code != 404 {
		t.Errorf("other account PATCH = %d, want 404", code)
	}
	if l := b.must(200, "GET", "/reserved_domains", nil); len(l["reserved_domains"].([]any)) != 0 {
		t.Errorf("other account's list = %v, want empty", l)
	}
	// Names under A's wildcard cannot be reserved by B; a wildcard over A's name neither.
	for _, name := range []string{"foo.acme-a.test", "x.y.acme-a.test", "*.acme-a.test", "*.z.acme-a.test"} {
		code, out := b.do("POST", "/reserved_domains", map[string]any{"domain": name})
		if code != 409 || out["error_code"] != "FERRY_DOMAIN_TAKEN" {
			t.Errorf("B reserving %s = %d %v, want 409 FERRY_DOMAIN_TAKEN", name, code, out)
		}
	}
	a.must(201, "POST", "/reserved_domains", map[string]any{"domain": "app.acme-b.test"})
	if code, _ := b.do("POST", "/reserved_domains", map[string]any{"domain": "*.acme-b.test"}); code != 409 {
		t.Errorf("B reserving a wildcard over A's app.acme-b.test = %d, want 409", code)
	}
	// A's own update works and shows.
	d = a.must(200, "PATCH", "/reserved_domains/"+id, map[string]any{"metadata": `{"team":"x"}`})
	if d["metadata"] != `{"team":"x"}` || d["description"] != "A's" {
		t.Errorf("after PATCH: %v, want metadata set and description kept", d)
	}
	a.must(204, "DELETE", "/reserved_domains/"+id, nil)
	// Freed: B may now reserve it.
	b.must(201, "POST", "/reserved_domains", map[string]any{"domain": "foo.acme-a.test"})
}

func TestAPIPagination(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	for i := range 5 {
		c.must(201, "POST", "/credentials", map[string]any{"description": fmt.Sprint("cred ", i)})
	}
	seen := map[string]bool{}
	path := "/credentials?limit=2"
	pages := 0
	for path != "" {
		l := c.must(200, "GET", path, nil)
		for _, it := range l["credentials"].([]any) {
			m := it.(map[string]any)
			if m["token"] != nil {
				t.Errorf("listed credential shows its token: %v", m)
			}
			seen[m["id"].(string)] = true
		}
		pages++
		path, _ = l["next_page_uri"].(string)
	}
	// 5 created here plus the test relay's own credential.
	if len(seen) != 6 || pages != 3 {
		t.Errorf("paged through %d credentials in %d pages, want 6 in 3", len(seen), pages)
	}
	if code, out := c.do("GET", "/credentials?limit=0", nil); code != 400 {
		t.Errorf("limit=0: %d %v, want 400", code, out)
	}
}

// TestAPICertificates uploads a certificate, attaches it to a reserved domain (served on
// the next handshake, no restart), detaches it, and checks the key is sealed at rest.
func TestAPICertificates(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	ca := certtest.NewCA(t, "Uploaded Test CA")
	leaf := ca.Server(t, "secure.custom.test")
	certPEM, keyPEM := pemOf(leaf)

	// Refusals name the field and the certificate.
	otherLeaf := ca.Server(t, "other.custom.test")
	_, otherKey := pemOf(otherLeaf)
	code, out := c.do("POST", "/tls_certificates", map[string]any{"certificate_pem": certPEM, "private_key_pem": otherKey})
	if code != 400 || out["error_code"] != "FERRY_BAD_CERTIFICATE" || !strings.Contains(fmt.Sprint(out["msg"]), "certificate 1") {
		t.Errorf("mismatched key: %d %v, want 400 naming certificate 1", code, out)
	}
	code, out = c.do("POST", "/tls_certificates", map[string]any{"certificate_pem": "garbage", "private_key_pem": keyPEM})
	if details, _ := out["details"].(map[string]any); code != 400 || details["field"] != "certificate_pem" {
		t.Errorf("garbage bundle: %d %v, want 400 on certificate_pem", code, out)
	}

	up := c.must(201, "POST", "/tls_certificates", map[string]any{"certificate_pem": certPEM, "private_key_pem": keyPEM, "description": "prod"})
	certID := up["id"].(string)
	if _, has := up["private_key_pem"]; has {
		t.Errorf("upload answer contains the private key: %v", up)
	}
	sans, _ := up["subject_alternative_names"].(map[string]any)
	if fmt.Sprint(sans["dns_names"]) != "[secure.custom.test]" || up["private_key_type"] != "ecdsa" || up["issuer_common_name"] != "Uploaded Test CA" {
		t.Errorf("parsed fields = %v, want SAN secure.custom.test, ecdsa, issuer Uploaded Test CA", up)
	}

	// The key is not in the database in any form a reader could use.
	db, err := os.ReadFile(filepath.Join(r.Opts.Config.Data, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(r.Opts.Config.Data, "ferry.db-wal"))
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	raw := append(db, wal...)
	for name, needle := range map[string][]byte{
		"PEM header": []byte("PRIVATE KEY"), "DER": keyDER,
		"base64": []byte(base64.StdEncoding.EncodeToString(keyDER)[:40]),
	} {
		if bytes.Contains(raw, needle) {
			t.Errorf("database holds the private key (%s)", name)
		}
	}

	// An http tunnel on the reserved name: the relay's own certificate until one is attached.
	d := c.must(201, "POST", "/reserved_domains", map[string]any{"domain": "secure.custom.test"})
	r.startAgent(&forward.Tunnel{Name: "secure", Proto: "http", Addr: named(t, "secure"), Domain: "secure.custom.test"})
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "secure.custom.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS to secure.custom.test: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if got := served(); got.Issuer.CommonName == "Uploaded Test CA" {
		t.Fatalf("before attaching, served %v", got.Subject)
	}
	if code, out := c.do("PATCH", "/reserved_domains/"+d["id"].(string), map[string]any{"certificate_id": "cert_unknown"}); code != 400 {
		t.Errorf("attach unknown certificate: %d %v, want 400", code, out)
	}
	wrong := c.must(201, "POST", "/tls_certificates", func() map[string]any {
		cp, kp := pemOf(otherLeaf)
		return map[string]any{"certificate_pem": cp, "private_key_pem": kp}
	}())
	if code, out := c.do("PATCH", "/reserved_domains/"+d["id"].(string), map[string]any{"certificate_id": wrong["id"]}); code != 400 || !strings.Contains(fmt.Sprint(out["msg"]), "do not cover") {
		t.Errorf("attach a certificate for another name: %d %v, want 400 do not cover", code, out)
	}
	d = c.must(200, "PATCH", "/reserved_domains/"+d["id"].(string), map[string]any{"certificate_id": certID})
	if ref, _ := d["certificate"].(map[string]any); ref["id"] != certID {
		t.Errorf("after attach, certificate = %v, want %s", d["certificate"], certID)
	}
	if got := served(); got.Issuer.CommonName != "Uploaded Test CA" || got.SerialNumber.Cmp(leaf.Leaf.SerialNumber) != 0 {
		t.Errorf("after attaching, served %v from %v, want the uploaded certificate", got.Subject, got.Issuer)
	}
	// A request through it works, verified against the uploaded CA.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DialTLSContext: nil}
	tr.DialContext = r.httpClient(false).Transport.(*http.Transport).DialContext
	resp, err := (&http.Client{Transport: tr}).Get("https://secure.custom.test:" + port(r.Srv.HTTPSAddr().String()) + "/")
	if err != nil {
		t.Fatalf("GET through the uploaded certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	if string(body) != "secure" {
		t.Errorf("GET = %q, want secure", body)
	}
	// In use: cannot be deleted.
	if code, out := c.do("DELETE", "/tls_certificates/"+certID, nil); code != 409 {
		t.Errorf("delete attached certificate: %d %v, want 409", code, out)
	}
	c.must(200, "DELETE", "/reserved_domains/"+d["id"].(string)+"/certificate", nil)
	if got := served(); got.Issuer.CommonName == "Uploaded Test CA" {
		t.Errorf("after detaching, still served the uploaded certificate")
	}
	c.must(204, "DELETE", "/tls_certificates/"+certID, nil)

	// Certificate authorities: a non-CA is refused citing RFC 5280.
	got := c.must(201, "POST", "/certificate_authorities", map[string]any{"ca_pem": string(ca.PEM)})
	if got["subject_common_name"] != "Uploaded Test CA" {
		t.Errorf("CA subject = %v", got["subject_common_name"])
	}
	leafPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}))
	if code, out := c.do("POST", "/certificate_authorities", map[string]any{"ca_pem": leafPEM}); code != 400 || !strings.Contains(fmt.Sprint(out["msg"]), "RFC 5280") {
		t.Errorf("non-CA as CA: %d %v, want 400 citing RFC 5280", code, out)
	}
}

// TestAPIReservedAddrs: the relay picks the port; the owner binds it with --remote-addr.
func TestAPIReservedAddrs(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	ra := c.must(201, "POST", "/reserved_addrs", map[string]any{"description": "db"})
	addr := ra["addr"].(string)
	pr := r.Ports()
	var p int
	if _, err := fmt.Sscanf(addr, servertest.Domain+":%d", &p); err != nil || !pr.Contains(p) {
		t.Fatalf("reserved addr %q, want %s:PORT in %d-%d", addr, servertest.Domain, pr.Low, pr.High)
	}
	a := r.startAgent(&forward.Tunnel{Name: "db", Proto: "tcp", Addr: echoServer(t), RemoteAddr: addr})
	if got := a.url(t, "tcp"); got != "tcp://"+addr {
		t.Errorf("bound %s, want tcp://%s", got, addr)
	}
	if code, out := c.do("POST", "/reserved_addrs", map[string]any{"addr": "x:1"}); code != 400 {
		t.Errorf("choosing the addr: %d %v, want 400 (the relay picks it)", code, out)
	}
}

// TestAPIEdgeTLS: a domain's minimum TLS version and mutual TLS, set through the API,
// apply on the next handshake, with clients pinned to each version.
func TestAPIEdgeTLS(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	modern := c.must(201, "POST", "/reserved_domains", map[string]any{"domain": "modern.tls.test", "tls_termination": map[string]string{"min_version": "1.3"}})
	if tt, _ := modern["tls_termination"].(map[string]any); tt["min_version"] != "1.3" {
		t.Errorf("tls_termination = %v, want min_version 1.3", modern["tls_termination"])
	}
	c.must(201, "POST", "/reserved_domains", map[string]any{"domain": "legacy.tls.test", "tls_termination": map[string]string{"min_version": "1.0"}})
	if code, out := c.do("POST", "/reserved_domains", map[string]any{"domain": "bad.tls.test", "tls_termination": map[string]string{"min_version": "1.4"}}); code != 400 || !strings.Contains(fmt.Sprint(out["msg"]), "tls_termination.min_version") {
		t.Errorf("min_version 1.4: %d %v, want 400 naming tls_termination.min_version", code, out)
	}
	up := named(t, "ok")
	for _, name := range []string{"modern.tls.test", "legacy.tls.test", "plain"} {
		r.startAgent(&forward.Tunnel{Name: name, Proto: "http", Addr: up, Domain: name})
	}
	handshake := func(name string, version uint16, certs ...tls.Certificate) error {
		conf := &tls.Config{ServerName: name, InsecureSkipVerify: true, MinVersion: version, MaxVersion: version}
		if len(certs) > 0 { // sent whatever CAs the server asks for, as a misbehaving client would
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), conf)
		if err == nil {
			// TLS 1.3 reports a refused client certificate only on the first read.
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", name)
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name    string
		version uint16
		ok      bool
	}{
		{"modern.tls.test", tls.VersionTLS13, true},
		{"modern.tls.test", tls.VersionTLS12, false},
		{"legacy.tls.test", tls.VersionTLS10, true},
		{"legacy.tls.test", tls.VersionTLS11, true},
		{"plain." + servertest.Domain, tls.VersionTLS12, true},
		{"plain." + servertest.Domain, tls.VersionTLS11, false}, // default minimum 1.2
		{"plain." + servertest.Domain, tls.VersionTLS10, false},
	} {
		err := handshake(tc.name, tc.version)
		if (err == nil) != tc.ok {
			t.Errorf("%s with only %s: err = %v, want ok=%v", tc.name, tls.VersionName(tc.version), err, tc.ok)
		}
	}

	// Mutual TLS: attach a CA; clients without a certificate, or with one from another
	// CA, are refused with the right alert; a client of the CA passes.
	clientCA := certtest.NewCA(t, "Client CA")
	caObj := c.must(201, "POST", "/certificate_authorities", map[string]any{"ca_pem": string(clientCA.PEM)})
	ids := make([]string, 11)
	for i := range ids {
		ids[i] = caObj["id"].(string)
	}
	if code, out := c.do("PATCH", "/reserved_domains/"+modern["id"].(string), map[string]any{"mutual_tls": map[string]any{"certificate_authority_ids": ids}}); code != 400 || !strings.Contains(fmt.Sprint(out["msg"]), "at most 10") {
		t.Errorf("11 CAs: %d %v, want 400 at most 10", code, out)
	}
	d := c.must(200, "PATCH", "/reserved_domains/"+modern["id"].(string), map[string]any{"mutual_tls": map[string]any{"certificate_authority_ids": ids[:1]}})
	if m, _ := d["mutual_tls"].(map[string]any); len(m["certificate_authorities"].([]any)) != 1 {
		t.Errorf("mutual_tls = %v, want one CA", d["mutual_tls"])
	}
	if err := handshake("modern.tls.test", tls.VersionTLS13); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: %v, want alert certificate required", err)
	}
	if err := handshake("modern.tls.test", tls.VersionTLS13, certtest.NewCA(t, "Rogue").Client(t, "eve")); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("client certificate from another CA: %v, want alert bad certificate (42)", err)
	}
	if err := handshake("modern.tls.test", tls.VersionTLS13, clientCA.Client(t, "alice")); err != nil {
		t.Errorf("client certificate from the domain's CA: %v, want ok", err)
	}
	if code, _ := c.do("DELETE", "/certificate_authorities/"+caObj["id"].(string), nil); code != 409 {
		t.Errorf("delete a CA in use = %d, want 409", code)
	}
	// Dropping mutual TLS (null) takes effect on the next handshake.
	c.must(200, "PATCH", "/reserved_domains/"+modern["id"].(string), map[string]any{"mutual_tls": nil})
	if err := handshake("modern.tls.test", tls.VersionTLS13); err != nil {
		t.Errorf("after dropping mutual TLS: %v, want ok", err)
	}
}

// TestAPIObjectsSurviveRestart: reservations, certificates and keys come back after a
// relay restart (online tunnels do not: agents bind again).
func TestAPIObjectsSurviveRestart(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	ca := certtest.NewCA(t, "Restart CA")
	certPEM, keyPEM := pemOf(ca.Server(t, "kept.restart.test"))
	cert := c.must(201, "POST", "/tls_certificates", map[string]any{"certificate_pem": certPEM, "private_key_pem": keyPEM})
	c.must(201, "POST", "/reserved_domains", map[string]any{"domain": "kept.restart.test", "certificate_id": cert["id"]})
	addr := c.must(201, "POST", "/reserved_addrs", map[string]any{})["addr"].(string)

	r.Restart()
	if l := c.must(200, "GET", "/reserved_domains", nil); len(l["reserved_domains"].([]any)) != 1 {
		t.Errorf("after restart: %v, want the reserved domain", l)
	}
	r.startAgent(&forward.Tunnel{Name: "kept", Proto: "http", Addr: named(t, "kept"), Domain: "kept.restart.test"})
	conn, err := tls.Dial("tcp", r.Srv.HTTPSAddr().String(), &tls.Config{ServerName: "kept.restart.test", RootCAs: ca.Pool})
	if err != nil {
		t.Fatalf("after restart, TLS with the uploaded certificate: %v", err)
	}
	conn.Close()
	_, otherToken := r.NewAccount(t, "other")
	cfg := r.agentConfig(&forward.Tunnel{Name: "steal", Proto: "tcp", Addr: echoServer(t), RemoteAddr: addr})
	cfg.Authtoken = otherToken
	if _, err := r.tryAgent(cfg); err == nil || !strings.Contains(err.Error(), "reserved by another account") {
		t.Errorf("after restart, another account binding %s = %v, want refused", addr, err)
	}
}

// TestAPIDomainFixes: refusals found by trying the API as a user.
func TestAPIDomainFixes(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	// Over-long fields are the client's mistake: 400 naming the field.
	code, out := c.do("POST", "/credentials", map[string]any{"description": strings.Repeat("x", 300)})
	if details, _ := out["details"].(map[string]any); code != 400 || details["field"] != "description" {
		t.Errorf("300-byte description: %d %v, want 400 on description", code, out)
	}
	// Plain HTTP cannot bypass a domain's mutual TLS or minimum version.
	c.must(201, "POST", "/reserved_domains", map[string]any{"domain": "strict.fix.test", "tls_termination": map[string]string{"min_version": "1.3"}})
	r.startAgent(&forward.Tunnel{Name: "strict", Proto: "http", Addr: named(t, "strict"), Domain: "strict.fix.test"})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+r.Srv.HTTPAddr().String()+"/x", nil)
	req.Host = "strict.fix.test"
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(resp.Header.Get("Location"), "https://strict.fix.test:") {
		t.Errorf("plain HTTP to a domain with TLS settings: %d Location %q, want 308 to https", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestAPIDeletedCredentialEndsItsSessions: deleting an authtoken through the API ends the
// sessions that authenticated with it at once (their tunnels go offline), the agent is
// told why and cannot come back with it; other agents of the account are untouched.
func TestAPIDeletedCredentialEndsItsSessions(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	cred := c.must(201, "POST", "/credentials", map[string]any{"description": "laptop"})
	token, _ := cred["token"].(string)
	id, _ := cred["id"].(string)

	up := echoServer(t)
	cfg := r.agentConfig(&forward.Tunnel{Name: "doomed", Proto: "tcp", Addr: up})
	cfg.Authtoken = token
	doomed, err := r.tryAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := r.startAgent(&forward.Tunnel{Name: "other", Proto: "tcp", Addr: up})
	doomedAddr, otherAddr := tcpAddrOf(t, doomed.urls[0]), tcpAddrOf(t, other.urls[0])
	for _, addr := range []string{doomedAddr, otherAddr} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := echoOnce(conn, "hi"); err != nil || got != "hi" {
			t.Fatalf("echo through %s: %q, %v", addr, got, err)
		}
		conn.Close()
	}

	c.must(204, "DELETE", "/credentials/"+id, nil)
	if err := doomed.waitEnded(t, "the agent whose authtoken was deleted"); err == nil || !strings.Contains(err.Error(), "authtoken") {
		t.Fatalf("agent ended with %v, want an error about its authtoken", err)
	}
	if conn, err := net.DialTimeout("tcp", doomedAddr, time.Second); err == nil {
		got, _ := echoOnce(conn, "hi")
		conn.Close()
		if got == "hi" {
			t.Fatal("the revoked agent's tunnel still carries traffic")
		}
	}
	conn, err := net.Dial("tcp", otherAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, err := echoOnce(conn, "still here"); err != nil || got != "still here" {
		t.Fatalf("the account's other agent: %q, %v", got, err)
	}
}

// TestAPIDeletedReservationEndsItsTunnels: deleting a reserved domain through the API
// takes the tunnels it alone allowed offline at once. An agent serving only such a tunnel
// stops (its bind is refused when it reconnects); an agent that also serves a name needing
// no reservation keeps that one online.
func TestAPIDeletedReservationEndsItsTunnels(t *testing.T) {
	r := newAPIRelay(t)
	c := r.api(r.Account)
	for _, d := range []string{"app.custom.test", "api.custom.test"} {
		c.must(201, "POST", "/reserved_domains", map[string]any{"domain": d})
	}
	res := c.must(200, "GET", "/reserved_domains", nil)
	ids := map[string]string{}
	for _, it := range res["reserved_domains"].([]any) {
		m := it.(map[string]any)
		ids[m["domain"].(string)] = m["id"].(string)
	}

	single, err := r.tryAgent(r.agentConfig(&forward.Tunnel{Name: "app", Proto: "http", Addr: named(t, "app"), Domain: "app.custom.test"}))
	if err != nil {
		t.Fatal(err)
	}
	both, err := r.tryAgent(r.agentConfig(
		&forward.Tunnel{Name: "api", Proto: "http", Addr: named(t, "api"), Domain: "api.custom.test"},
		&forward.Tunnel{Name: "random", Proto: "http", Addr: named(t, "random")}))
	if err != nil {
		t.Fatal(err)
	}
	client := r.httpClient(false)
	fetch := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var randomURL string
	for _, u := range both.urls {
		if strings.HasPrefix(u, "http://") && !strings.Contains(u, "custom.test") {
			randomURL = u
		}
	}
	appURL := single.url(t, "http")
	apiURL := strings.Replace(appURL, "app.custom.test", "api.custom.test", 1)
	for url, want := range map[string]string{appURL: "app", apiURL: "api", randomURL: "random"} {
		if code, body := fetch(url); code != 200 || body != want {
			t.Fatalf("%s before: %d %q, want %q", url, code, body, want)
		}
	}

	c.must(204, "DELETE", "/reserved_domains/"+ids["app.custom.test"], nil)
	// It logs the relay's reason ("the reservation app.custom.test was deleted"),
	// reconnects, and its bind is refused: the name is no longer the account's.
	if err := single.waitEnded(t, "the agent serving the deleted reservation"); err == nil || !strings.Contains(err.Error(), "not reserved by this account") {
		t.Fatalf("agent ended with %v, want its bind refused", err)
	}
	if code, _ := fetch(appURL); code != 404 {
		t.Fatalf("app.custom.test after its reservation was deleted: %d, want 404", code)
	}

	c.must(204, "DELETE", "/reserved_domains/"+ids["api.custom.test"], nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := fetch(apiURL)
		rc, body := fetch(randomURL)
		if code == 404 && rc == 200 && body == "random" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting api.custom.test: it answers %d (want 404), the agent's other tunnel %d %q (want 200 random)", code, rc, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-both.done:
		both.once.Do(both.cancel)
		t.Fatalf("the agent with a tunnel left stopped: %v", err)
	default:
	}
}
