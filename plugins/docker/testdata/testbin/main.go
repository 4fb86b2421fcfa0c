// Command testbin is the test image of package docker: "app" is a small app
// (HTTP on :8080, a TCP "debugger" on :5005, output on stdout and stderr),
// "sidecar" fakes tether-agent's sidecar mode.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbin app|sidecar [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "app":
		app(os.Args[2:])
	case "sidecar":
		sidecar(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func waitTerm() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

func app(args []string) {
	fs := flag.NewFlagSet("app", flag.ExitOnError)
	exit := fs.Int("exit", -1, "print and exit with this code at once")
	dial := fs.String("dial", "", "connect to this address and print the first line it sends")
	fs.Parse(args)
	fmt.Println("app-stdout hello FOO=" + os.Getenv("FOO"))
	fmt.Fprintln(os.Stderr, "app-stderr hello")
	if *dial != "" {
		addrs, err := net.LookupHost(strings.Split(*dial, ":")[0])
		fmt.Printf("resolved %v %v\n", addrs, err)
		c, err := net.DialTimeout("tcp", *dial, 5*time.Second)
		if err != nil {
			fmt.Printf("dial %s: %v\n", *dial, err)
		} else {
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Printf("dial %s: got %q\n", *dial, line)
			c.Close()
		}
	}
	if f := os.Getenv("READ_FILE"); f != "" {
		b, err := os.ReadFile(f)
		fmt.Printf("file %s: %q %v\n", f, b, err)
	}
	if *exit >= 0 {
		fmt.Printf("exiting %d\n", *exit)
		os.Exit(*exit)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("request " + r.URL.Path)
		fmt.Fprint(w, "pong")
	})
	go func() {
		if err := http.ListenAndServe(":8080", nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}()
	go func() {
		l, err := net.Listen("tcp", ":5005")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("Listening for transport dt_socket at address: 5005")
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("debug\n"))
			c.Close()
		}
	}()
	waitTerm()
	fmt.Println("app terminating")
}

func sidecar(args []string) {
	fs := flag.NewFlagSet("sidecar", flag.ExitOnError)
	mode := fs.String("mode", "ok", "ok | fail | silent")
	dieAfter := fs.Duration("die-after", 0, "exit with code 7 after this long")
	fs.Parse(args)
	switch *mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "sidecar: installing nftables rules: operation not permitted")
		os.Exit(1)
	case "silent":
		fmt.Fprintln(os.Stderr, "sidecar: starting")
		waitTerm()
		return
	}
	fmt.Fprintln(os.Stderr, "sidecar: redirection installed")
	fmt.Println("tether-sidecar ready")
	if *dieAfter > 0 {
		time.Sleep(*dieAfter)
		fmt.Fprintln(os.Stderr, "sidecar: upstream lost")
		os.Exit(7)
	}
	waitTerm()
}
