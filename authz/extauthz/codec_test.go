package extauthz

import (
	"math/rand/v2"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// decodeBoth reads b with checkCodec and with protobuf-go: they must agree
// on the error and on the message.
func decodeBoth(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	var want authv3.CheckRequest
	wantErr := proto.Unmarshal(b, &want)
	var got authv3.CheckRequest
	fast = decodeCheck(append([]byte{}, b...), &got)
	var gotAll authv3.CheckRequest
	gotErr := newCheckCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &gotAll)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("codec error %v, protobuf-go's %v (input %x)", gotErr, wantErr, b)
	}
	if wantErr != nil {
		return fast
	}
	if !proto.Equal(&gotAll, &want) {
		t.Fatalf("codec read %v, protobuf-go %v (input %x)", &gotAll, &want, b)
	}
	if fast && !proto.Equal(&got, &want) {
		t.Fatalf("fast path read %v, protobuf-go %v", &got, &want)
	}
	return fast
}

func randString(rng *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789-./:"
	b := make([]byte, rng.IntN(20))
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	if rng.IntN(20) == 0 {
		return string(b) + "é✓"
	}
	return string(b)
}

func randMap(rng *rand.Rand, n int) map[string]string {
	if n == 0 {
		return nil
	}
	m := map[string]string{}
	for range rng.IntN(n) {
		m[randString(rng)] = randString(rng)
	}
	return m
}

// randRequest is a request with any of the fields the fast path reads, and
// sometimes one it leaves to protobuf-go.
func randRequest(rng *rand.Rand) *authv3.CheckRequest {
	peer := func() *authv3.AttributeContext_Peer {
		if rng.IntN(5) == 0 {
			return nil
		}
		p := &authv3.AttributeContext_Peer{Service: randString(rng), Labels: randMap(rng, 3), Principal: randString(rng), Certificate: randString(rng)}
		switch rng.IntN(6) {
		case 0:
		case 1:
			p.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: randString(rng)}}}
		case 2:
			p.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: randString(rng), PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: randString(rng)},
				Protocol: corev3.SocketAddress_UDP, ResolverName: randString(rng), Ipv4Compat: true, NetworkNamespaceFilepath: randString(rng)}}}
		default:
			p.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0." + strconv.Itoa(rng.IntN(255)), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(rng.IntN(70000))}}}}
		}
		return p
	}
	a := &authv3.AttributeContext{
		Source:            peer(),
		Destination:       peer(),
		ContextExtensions: randMap(rng, 6),
	}
	if rng.IntN(4) != 0 {
		h := &authv3.AttributeContext_HttpRequest{
			Id: randString(rng), Method: randString(rng), Headers: randMap(rng, 20), Path: randString(rng), Host: randString(rng),
			Scheme: randString(rng), Query: randString(rng), Fragment: randString(rng), Size: int64(rng.IntN(3000)) - 1,
			Protocol: randString(rng), Body: randString(rng),
		}
		if rng.IntN(5) == 0 {
			h.RawBody = []byte(randString(rng))
		}
		if rng.IntN(10) == 0 {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "k", Value: "v"}}}
		}
		a.Request = &authv3.AttributeContext_Request{Http: h}
		if rng.IntN(3) == 0 {
			a.Request.Time = &timestamppb.Timestamp{Seconds: rng.Int64N(1 << 40), Nanos: rng.Int32N(1e9)}
		}
	}
	if rng.IntN(4) == 0 {
		a.TlsSession = &authv3.AttributeContext_TLSSession{Sni: randString(rng)}
	}
	if rng.IntN(8) == 0 {
		s, _ := structpb.NewStruct(map[string]any{"source.principal": randString(rng)})
		a.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio_authn": s}}
	}
	if rng.IntN(10) == 0 {
		return &authv3.CheckRequest{}
	}
	return &authv3.CheckRequest{Attributes: a}
}

func TestCheckCodecReadsAsProtobuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	const n = 5000
	for range n {
		req := randRequest(rng)
		b, err := proto.MarshalOptions{Deterministic: rng.IntN(2) == 0}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if decodeBoth(t, b) {
			fast++
		}
		// The same bytes twice over: protobuf merges repeated messages.
		decodeBoth(t, append(append([]byte{}, b...), b...))
		// Truncated.
		if len(b) > 0 {
			decodeBoth(t, b[:rng.IntN(len(b))])
		}
	}
	if fast < n/2 {
		t.Errorf("only %d of %d requests took the fast path", fast, n)
	}
	if !decodeBoth(t, mustMarshal(t, benchRequest())) {
		t.Error("an ordinary request did not take the fast path")
	}
}

func TestCheckCodecOddInput(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	bytesField := func(num protowire.Number, content []byte) []byte {
		return protowire.AppendBytes(tag(num, protowire.BytesType), content)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	headers := func(k, v []byte) []byte {
		return bytesField(1, bytesField(4, bytesField(2, bytesField(3, cat(bytesField(1, k), bytesField(2, v))))))
	}
	for name, b := range map[string][]byte{
		"empty":             nil,
		"invalid utf-8 key": headers([]byte{0xff}, []byte("v")),
		"invalid utf-8 val": headers([]byte("k"), []byte{0xc3}),
		"entry extra field": bytesField(1, bytesField(10, cat(bytesField(1, []byte("k")), bytesField(3, []byte("x"))))),
		"entry no value":    bytesField(1, bytesField(10, bytesField(1, []byte("k")))),
		"entry no key":      bytesField(1, bytesField(10, bytesField(2, []byte("v")))),
		"duplicate key":     bytesField(1, cat(bytesField(10, cat(bytesField(1, []byte("k")), bytesField(2, []byte("1")))), bytesField(10, cat(bytesField(1, []byte("k")), bytesField(2, []byte("2")))))),
		"unknown field":     cat(bytesField(1, nil), bytesField(9, []byte("x"))),
		"varint as string":  bytesField(1, bytesField(4, bytesField(2, protowire.AppendVarint(tag(2, protowire.VarintType), 5)))),
		"string as varint":  bytesField(1, bytesField(4, bytesField(2, bytesField(9, []byte("x"))))),
		"port then named":   bytesField(1, bytesField(1, bytesField(1, bytesField(1, cat(protowire.AppendVarint(tag(3, protowire.VarintType), 80), bytesField(4, []byte("http"))))))),
		"huge port":         bytesField(1, bytesField(1, bytesField(1, bytesField(1, protowire.AppendVarint(tag(3, protowire.VarintType), 1<<40))))),
		"negative size":     bytesField(1, bytesField(4, bytesField(2, protowire.AppendVarint(tag(9, protowire.VarintType), ^uint64(0))))),
		"last string wins":  bytesField(1, bytesField(4, bytesField(2, cat(bytesField(2, []byte("GET")), bytesField(2, []byte("POST")))))),
		"raw body twice":    bytesField(1, bytesField(4, bytesField(2, cat(bytesField(12, []byte("ab")), bytesField(12, nil))))),
		"fixed32":           cat(bytesField(1, nil), protowire.AppendFixed32(tag(3, protowire.Fixed32Type), 1)),
		"bad length":        {0x0a, 0x7f, 0x01},
		"bad tag":           {0x00},
		"long varint":       {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		t.Run(name, func(t *testing.T) { decodeBoth(t, b) })
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzCheckCodec(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, _ := proto.Marshal(randRequest(rng))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { decodeBoth(t, b) })
}

func BenchmarkCheckCodec(b *testing.B) {
	data, err := proto.Marshal(benchRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r authv3.CheckRequest
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checkCodec", func(b *testing.B) {
		c := newCheckCodec()
		b.ReportAllocs()
		for b.Loop() {
			var r authv3.CheckRequest
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
