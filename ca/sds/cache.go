package sds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// secretCache is the cache behind go-control-plane's xDS server: the server
// keeps the protocol (nonces, stale-nonce requests dropped, subscriptions,
// delta bookkeeping), the cache decides what to send.
//
// It replaces go-control-plane's SnapshotCache because of how that cache
// treats a NACK: it answers any request whose version_info differs from the
// snapshot's version at once (cache/v3/simple.go, CreateWatch), and after a
// NACK Envoy's version_info is the last version it accepted, so the rejected
// version is sent again and again (upstream issue #962). Here every resource
// has its own version and a stream is answered only when a resource it
// subscribes to has a version other than the one last sent on that stream
// (the subscription's ReturnedResources, which the server records on send):
// an ACK and a NACK both leave nothing to send until a resource changes, a
// new subscription or a new stream gets what it lacks.
type secretCache struct {
	mu sync.Mutex
	// gen counts changes; a changed resource's version is the gen of the
	// change, a response's version_info the gen when it was built.
	gen       uint64
	resources map[string]*entry
	nextWatch uint64
	sotw      map[uint64]sotwWatch
	delta     map[uint64]deltaWatch
}

type entry struct {
	version string
	secret  *tlsv3.Secret
	any     *anypb.Any
}

type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	ch  chan cache.Response
}

type deltaWatch struct {
	req *cache.DeltaRequest
	sub cache.Subscription
	ch  chan cache.DeltaResponse
}

var _ cache.Cache = (*secretCache)(nil)

func newSecretCache() *secretCache {
	return &secretCache{
		resources: map[string]*entry{},
		sotw:      map[uint64]sotwWatch{},
		delta:     map[uint64]deltaWatch{},
	}
}

// set adds or replaces secrets by name; a secret equal to the one held
// keeps its version, so nothing is pushed for it. Every open watch that now
// lacks something is answered. It reports the names that changed.
func (c *secretCache) set(secrets []*tlsv3.Secret) ([]string, error) {
	anys := make([]*anypb.Any, len(secrets))
	for i, s := range secrets {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
		}
		a, err := anypb.New(s)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
		}
		anys[i] = a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var changed []string
	for i, s := range secrets {
		if old, ok := c.resources[s.GetName()]; ok && proto.Equal(old.secret, s) {
			continue
		}
		if len(changed) == 0 {
			c.gen++
		}
		changed = append(changed, s.GetName())
		c.resources[s.GetName()] = &entry{version: strconv.FormatUint(c.gen, 10), secret: s, any: anys[i]}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	for id, w := range c.sotw {
		if resp := c.sotwResponse(w.req, w.sub); resp != nil {
			w.ch <- resp // capacity 1 and answered once: never blocks
			delete(c.sotw, id)
		}
	}
	for id, w := range c.delta {
		if resp := c.deltaResponse(w.req, w.sub); resp != nil {
			w.ch <- resp
			delete(c.delta, id)
		}
	}
	return changed, nil
}

// get returns the secret held under name, or nil.
func (c *secretCache) get(name string) *tlsv3.Secret {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.resources[name]; ok {
		return e.secret
	}
	return nil
}

// unknown returns the names among names that the cache does not hold.
func (c *secretCache) unknown(names []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range names {
		if _, ok := c.resources[n]; !ok && n != "*" {
			out = append(out, n)
		}
	}
	return out
}

// CreateWatch answers a state-of-the-world request at once when the stream
// lacks the current version of a resource it subscribes to, and otherwise
// waits for set to change one.
func (c *secretCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if resp := c.sotwResponse(req, sub); resp != nil {
		ch <- resp
		return func() {}, nil
	}
	c.nextWatch++
	id := c.nextWatch
	c.sotw[id] = sotwWatch{req: req, sub: sub, ch: ch}
	return func() {
		c.mu.Lock()
		delete(c.sotw, id)
		c.mu.Unlock()
	}, nil
}

// sotwResponse is nil when the stream has the current version of every
// resource it subscribes to. Otherwise it carries every subscribed resource
// the cache holds, changed or not: Envoy's SotW watch map treats a resource
// missing from a response as removed from a watch that had it, and its SDS
// subscription rejects an update without its secret ("Missing SDS
// resources"), while Envoy skips a secret whose content has not changed.
// go-control-plane's caches and SPIRE's handler answer the same way.
func (c *secretCache) sotwResponse(req *cache.Request, sub cache.Subscription) cache.Response {
	names := c.subscribed(sub)
	returned := sub.ReturnedResources()
	stale := false
	for _, n := range names {
		if returned[n] != c.resources[n].version {
			stale = true
			break
		}
	}
	if !stale {
		return nil
	}
	next := maps.Clone(returned)
	if next == nil {
		next = map[string]string{}
	}
	out := &discovery.DiscoveryResponse{VersionInfo: strconv.FormatUint(c.gen, 10), TypeUrl: resource.SecretType}
	for _, n := range names {
		e := c.resources[n]
		out.Resources = append(out.Resources, e.any)
		next[n] = e.version
	}
	return &cache.PassthroughResponse{Request: req, DiscoveryResponse: out, ReturnedResources: next}
}

// CreateDeltaWatch answers an incremental request with the subscribed
// resources whose version the stream does not have, or waits for one.
func (c *secretCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if resp := c.deltaResponse(req, sub); resp != nil {
		ch <- resp
		return func() {}, nil
	}
	c.nextWatch++
	id := c.nextWatch
	c.delta[id] = deltaWatch{req: req, sub: sub, ch: ch}
	return func() {
		c.mu.Lock()
		delete(c.delta, id)
		c.mu.Unlock()
	}, nil
}

func (c *secretCache) deltaResponse(req *cache.DeltaRequest, sub cache.Subscription) cache.DeltaResponse {
	returned := sub.ReturnedResources()
	var out []*discovery.Resource
	next := maps.Clone(returned)
	if next == nil {
		next = map[string]string{}
	}
	for _, n := range c.subscribed(sub) {
		e := c.resources[n]
		if returned[n] == e.version {
			continue
		}
		out = append(out, &discovery.Resource{Name: n, Version: e.version, Resource: e.any})
		next[n] = e.version
	}
	if len(out) == 0 {
		return nil
	}
	return &cache.DeltaPassthroughResponse{
		DeltaRequest:   req,
		NextVersionMap: next,
		DeltaDiscoveryResponse: &discovery.DeltaDiscoveryResponse{
			SystemVersionInfo: strconv.FormatUint(c.gen, 10),
			TypeUrl:           resource.SecretType,
			Resources:         out,
		},
	}
}

// subscribed lists, sorted, the held resources the subscription names (all
// of them for a wildcard subscription).
func (c *secretCache) subscribed(sub cache.Subscription) []string {
	var names []string
	if sub.IsWildcard() {
		names = slices.Collect(maps.Keys(c.resources))
	} else {
		for n := range sub.SubscribedResources() {
			if _, ok := c.resources[n]; ok {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// Fetch answers FetchSecrets with the requested secrets the cache holds
// (all of them when none is named).
func (c *secretCache) Fetch(_ context.Context, req *cache.Request) (cache.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := req.GetResourceNames()
	if len(names) == 0 {
		names = slices.Sorted(maps.Keys(c.resources))
	}
	out := &discovery.DiscoveryResponse{VersionInfo: strconv.FormatUint(c.gen, 10), TypeUrl: resource.SecretType}
	returned := map[string]string{}
	for _, n := range names {
		if e, ok := c.resources[n]; ok {
			out.Resources = append(out.Resources, e.any)
			returned[n] = e.version
		}
	}
	if len(out.Resources) == 0 {
		return nil, status.Errorf(codes.NotFound, "no secret named %q", names)
	}
	return &cache.PassthroughResponse{Request: req, DiscoveryResponse: out, ReturnedResources: returned}, nil
}
