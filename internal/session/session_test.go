package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/testenv"
)

func TestDoneWhenConsulNoLongerKnowsTheSession(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	s, err := Create(context.Background(), c.Client, Options{Name: "test", TTL: 10 * time.Second}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	select {
	case <-s.Done():
		t.Fatalf("ended at once: %v", s.Err())
	default:
	}
	if _, err := c.Client.Session().Destroy(s.ID, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), ErrEnded) {
			t.Errorf("Err() = %v, want ErrEnded", s.Err())
		}
	case <-time.After(10 * time.Second): // the next renewal, a third of the TTL away, finds it gone
		t.Fatal("Done not closed 10s after the session was destroyed")
	}
}

func TestCloseDestroysTheSession(t *testing.T) {
	if testing.Short() {
		t.Skip("needs consul")
	}
	c := testenv.StartConsul(t)
	s, err := Create(context.Background(), c.Client, Options{Name: "test"}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	s.Close(context.Background())
	s.Close(context.Background()) // twice is harmless
	if e, _, err := c.Client.Session().Info(s.ID, nil); err != nil || e != nil {
		t.Fatalf("session still known after Close: %+v %v", e, err)
	}
}
