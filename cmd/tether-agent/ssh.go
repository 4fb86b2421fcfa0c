package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tether-dev/tether/agent"
	"github.com/tether-dev/tether/internal/agentproto"
)

// Environment variables read by `tether-agent ssh` when the flags are not
// given: the authorized_keys text and the host private key (PEM).
const (
	envAuthorizedKeys = agentproto.EnvAuthorizedKeys
	envHostKeyName    = agentproto.EnvHostKey
)

const sshArgs = "--listen ADDR --authorized-keys FILE [--host-key FILE] [--idle-exit 60s] [--data-listen 127.0.0.1:2223]"

func runSSH(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("ssh", sshArgs,
		"Serve Tether's SSH tunnel: public-key authentication only, TCP forwarding\n"+
			"(direct-tcpip, tcpip-forward) and nothing else: no shell, no commands.\n"+
			"With --data-listen it also serves the data port of the Kubernetes transport:\n"+
			"connections that present a random token, which authenticated SSH clients get\n"+
			"with the global request "+agentproto.DataTokenRequest+", carry multiplexed\n"+
			"TCP streams with large flow-control windows.", stdout, stderr)
	listen := fs.String("listen", ":2222", "`ADDR` to listen on")
	authFile := fs.String("authorized-keys", "", "authorized_keys `FILE` with the client public keys (required)")
	hostKeyFile := fs.String("host-key", "", "host private key `FILE` (OpenSSH or PEM, unencrypted); default: a new ed25519 key in memory")
	idle := fs.Duration("idle-exit", 0, "exit after `DURATION` without a connected client, e.g. 60s (0 = never)")
	dataListen := fs.String("data-listen", "", "serve the data port on `ADDR` (e.g. 127.0.0.1:2223); default none")
	logLevel := logFlag(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	// In a pod with a read-only root filesystem the keys come from the
	// environment instead of files (the flags win when both are given).
	envAuth, envHostKey := os.Getenv(envAuthorizedKeys), os.Getenv(envHostKeyName)
	if *authFile == "" && envAuth == "" {
		fmt.Fprintln(stderr, "tether-agent ssh: --authorized-keys (or $"+envAuthorizedKeys+") is required")
		fs.Usage()
		return errUsage
	}
	if *idle < 0 {
		return fmt.Errorf("--idle-exit %v: must not be negative", *idle)
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		return err
	}
	authSrc := *authFile
	var data []byte
	if authSrc == "" {
		authSrc, data = "$"+envAuthorizedKeys, []byte(envAuth)
	} else if data, err = os.ReadFile(*authFile); err != nil {
		return err
	}
	keys, err := agent.ParseAuthorizedKeys(data)
	if err != nil {
		return fmt.Errorf("%s: %w", authSrc, err)
	}
	var hostKey ssh.Signer
	if *hostKeyFile != "" {
		pem, err := os.ReadFile(*hostKeyFile)
		if err != nil {
			return err
		}
		if hostKey, err = ssh.ParsePrivateKey(pem); err != nil {
			return fmt.Errorf("%s: %w", *hostKeyFile, err)
		}
	} else if envHostKey != "" {
		if hostKey, err = ssh.ParsePrivateKey([]byte(envHostKey)); err != nil {
			return fmt.Errorf("$%s: %w", envHostKeyName, err)
		}
	} else if hostKey, _, err = agent.NewKey(""); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	scfg := agent.SSHServerConfig{
		HostKey:        hostKey,
		AuthorizedKeys: keys,
		IdleExit:       *idle,
		Logger:         log,
	}
	var dataLn net.Listener
	var token []byte
	if *dataListen != "" {
		if dataLn, err = net.Listen("tcp", *dataListen); err != nil {
			ln.Close()
			return err
		}
		token = make([]byte, agentproto.TokenSize)
		rand.Read(token)
		host, _ := os.Hostname()
		scfg.Requests = map[string]func([]byte) (bool, []byte){
			agentproto.DataTokenRequest: agent.DataTokenHandler(token, agentproto.Describe(fullVersion()), host),
		}
	}
	fmt.Fprintf(stderr, "tether-agent %s: host key %s %s\n", agentproto.Describe(fullVersion()), hostKey.PublicKey().Type(), ssh.FingerprintSHA256(hostKey.PublicKey()))
	fmt.Fprintf(stderr, "tether-agent: listening on %s (%d authorized keys", ln.Addr(), len(keys))
	if *idle > 0 {
		fmt.Fprintf(stderr, ", idle exit after %v", *idle)
	}
	if dataLn != nil {
		fmt.Fprintf(stderr, "; data port %s", dataLn.Addr())
	}
	fmt.Fprintln(stderr, ")")
	dctx, dcancel := context.WithCancel(ctx)
	dataDone := make(chan error, 1)
	if dataLn != nil {
		go func() { dataDone <- agent.ServeData(dctx, dataLn, agent.DataConfig{Token: token, Logger: log}) }()
	} else {
		dataDone <- nil
	}
	err = agent.ServeSSH(ctx, ln, scfg)
	dcancel()
	if derr := <-dataDone; err == nil && derr != nil {
		err = derr
	}
	if errors.Is(err, agent.ErrIdleExit) {
		fmt.Fprintf(stderr, "tether-agent: no client for %v: exiting\n", idle.Round(time.Millisecond))
		return nil
	}
	return err
}
