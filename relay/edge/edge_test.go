package edge

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrytunnel/ferry/relay/route"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPanicInHandlerRecovered: a panic while serving one connection is logged and that
// connection closed; the relay keeps serving the next ones.
func TestPanicInHandlerRecovered(t *testing.T) {
	var logs syncBuffer
	e := New(Config{Table: route.NewTable(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- e.acceptLoop(ln, func(c net.Conn) {
			if n.Add(1) == 1 {
				panic("boom")
			}
			io.WriteString(c, "ok") //nolint:errcheck
			c.Close()
		})
	}()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(first); len(b) != 0 {
		t.Errorf("the panicking connection got %q, want it closed", b)
	}
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(second); string(b) != "ok" {
		t.Errorf("the next connection got %q, want ok", b)
	}
	ln.Close()
	<-done
	if !strings.Contains(logs.String(), "panic in connection handler") || !strings.Contains(logs.String(), "boom") {
		t.Errorf("log = %q, want the panic logged", logs.String())
	}
}
