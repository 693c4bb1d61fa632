package main

import (
	"context"
	"net"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
)

// The bare server is the floor every Go ext_authz server stands on: a
// grpc-go Authorization server that allows everything without looking at
// the request. -bare runs it (this binary, re-executed with -serve-bare) as
// one more target, under the same load, so that its CPU per Check can be
// subtracted from the others'.

type bareServer struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}

func (bareServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

// serveBare serves on addr until the process is killed.
func serveBare(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, bareServer{})
	return s.Serve(l)
}

// startBare runs the bare server as a child process.
func startBare(ctx context.Context, reqs []request, timeout time.Duration) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startChild(ctx, "bare grpc-go", func(addr string) []string {
		return []string{self, "-serve-bare", addr}
	}, nil, checkReady(reqs[0].req), timeout)
}
