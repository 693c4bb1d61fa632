package twogen

import (
	"strconv"
	"sync"
	"testing"
)

func TestBoundedAndKeepsWhatIsUsed(t *testing.T) {
	m := New[string, int](50)
	m.Put("hot", 1)
	for i := range 10000 {
		m.Put(strconv.Itoa(i), i)
		if v, ok := m.Get("hot"); !ok || v != 1 {
			t.Fatalf("a key read between puts was lost after %d puts", i+1)
		}
		if n := m.Len(); n > 100 {
			t.Fatalf("%d entries, bound 100", n)
		}
	}
	if _, ok := m.Get("5"); ok {
		t.Error("an entry unused for thousands of puts survived")
	}
	if v, ok := m.Get("9999"); !ok || v != 9999 {
		t.Error("the last put is missing")
	}
}

func TestConcurrent(t *testing.T) {
	m := New[int, int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				m.Put(g*10000+i, i)
				if v, ok := m.Get(g*10000 + i); ok && v != i {
					t.Errorf("got %d for %d", v, i)
					return
				}
			}
		}()
	}
	wg.Wait()
}
