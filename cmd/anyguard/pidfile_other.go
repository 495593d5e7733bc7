//go:build !unix

package main

import (
	"errors"
	"syscall"
)

type pidFile struct{}

var errPidFileBusy = errors.New("state directory in use by another gateway")

func acquirePidFile(string) (*pidFile, error) {
	return nil, errors.New("pid file: not supported on this system")
}

func (*pidFile) Close() error { return nil }

func signalGateway(string, syscall.Signal) (int, error) {
	return 0, errors.New("reloading a running gateway: not supported on this system; send it SIGHUP")
}

func lockFile(string) (func(), error) {
	return nil, errors.New("lock: not supported on this system")
}
