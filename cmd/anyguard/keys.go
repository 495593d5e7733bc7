package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/anyguard/anyguard/internal/keys"
)

func cmdGenkey(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("genkey", "", "Print a new random private key in base64, as wg genkey does.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	k, err := keys.Generate()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, k.String())
	return err
}

func cmdPubkey(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("pubkey", "", "Read a base64 private key on standard input and print its public key, as wg pubkey does.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	buf := make([]byte, 1024)
	n, err := io.ReadFull(stdin, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read standard input: %w", err)
	}
	k, err := keys.Parse(string(buf[:n]))
	if err != nil {
		return fmt.Errorf("standard input: %w", err)
	}
	_, err = fmt.Fprintln(stdout, k.Public().String())
	return err
}
