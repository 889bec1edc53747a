package server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/ferrytunnel/ferry/agent/forward"
)

// rawGET sends a request line as given (no client-side path cleaning) over TLS.
func rawGET(t *testing.T, r *relayEnv, host, path string) (int, string) {
	t.Helper()
	c, err := r.dialTLS(&tls.Config{ServerName: host, RootCAs: r.CA.Pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFileUpstreamCannotEscape(t *testing.T) {
	r := newRelay(t)
	base := t.TempDir()
	pub := filepath.Join(base, "public")
	os.Mkdir(pub, 0o755)
	os.WriteFile(filepath.Join(pub, "hello.txt"), []byte("hello from disk"), 0o644)
	os.WriteFile(filepath.Join(base, "secret.txt"), []byte("TOP SECRET"), 0o644)
	os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(pub, "link.txt"))
	os.Symlink(base, filepath.Join(pub, "up"))
	a := r.startAgent(&forward.Tunnel{Name: "files", Proto: "http", FileRoot: pub})
	host := strings.Split(strings.TrimPrefix(a.url(t, "https"), "https://"), ":")[0]

	if code, body := rawGET(t, r, host, "/hello.txt"); code != 200 || body != "hello from disk" {
		t.Errorf("GET /hello.txt = %d %q, want 200 with the file", code, body)
	}
	for _, p := range []string{"/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/link.txt", "/up/secret.txt", "/./../../secret.txt"} {
		code, body := rawGET(t, r, host, p)
		if strings.Contains(body, "TOP SECRET") {
			t.Errorf("GET %s = %d and served the file outside the directory", p, code)
		}
	}
}

func TestUnixSocketUpstream(t *testing.T) {
	r := newRelay(t)
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "unix says hi to "+req.Host) //nolint:errcheck
	})}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Close()
	for _, inspectOn := range []bool{false, true} {
		tun := &forward.Tunnel{Name: fmt.Sprint("unix-", inspectOn), Proto: "http", Addr: sock, Network: "unix", Inspect: inspectOn}
		if inspectOn {
			tun.HostHeader = "app.internal" // forces the agent's HTTP proxy
		}
		a := r.startAgent(tun)
		host := strings.Split(strings.TrimPrefix(a.url(t, "https"), "https://"), ":")[0]
		code, body := rawGET(t, r, host, "/")
		if code != 200 || !strings.HasPrefix(body, "unix says hi") {
			t.Errorf("GET over unix socket (proxy %v) = %d %q", inspectOn, code, body)
		}
	}
}

func TestProxyProtocolToUpstream(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			r := newRelay(t)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					got <- "error: " + err.Error()
					return
				}
				got <- fmt.Sprintf("v%d %s", h.Version, h.SourceAddr)
				io.Copy(c, br) //nolint:errcheck
			}()
			a := r.startAgent(&forward.Tunnel{Name: "pp", Proto: "tcp", Addr: ln.Addr().String(), ProxyProto: version})
			c, err := net.Dial("tcp", tcpAddrOf(t, a.url(t, "tcp")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if echo, err := echoOnce(c, "after the header"); err != nil || echo != "after the header" {
				t.Fatalf("echo = %q, %v", echo, err)
			}
			h := <-got
			want := fmt.Sprintf("v%d %s", version, c.LocalAddr())
			if h != want {
				t.Errorf("upstream read PROXY header %q, want %q", h, want)
			}
		})
	}
}
