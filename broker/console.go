package broker

import (
	"errors"
	"net/http"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker/internal/console"
)

// webConsole is the broker's web console (package console), built on its
// first request after Start, with a client of the broker's own listener:
// the console reads the cluster through the Kafka protocol, as any client
// does.
type webConsole struct {
	b *Broker

	mu sync.Mutex
	h  http.Handler // nil until built
	cl *kgo.Client
}

func (c *webConsole) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, err := c.handler()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// handler returns the console, building it if the broker serves clients.
func (c *webConsole) handler() (http.Handler, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h != nil {
		return c.h, nil
	}
	if reason := c.b.notReady(); reason != "" {
		return nil, errors.New("console " + reason)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.b.Addr()))
	if err != nil {
		return nil, err
	}
	c.cl, c.h = cl, console.New(cl, console.Logger(c.b.log))
	return c.h, nil
}

// close closes the console's client, if it was built.
func (c *webConsole) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cl != nil {
		c.cl.Close()
	}
}
