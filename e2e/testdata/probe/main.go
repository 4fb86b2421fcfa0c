// Command probe is the app of the Docker-mode tests: it has no proxy
// settings at all and fetches every URL given, printing the bodies.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"} {
		if v := os.Getenv(k); v != "" {
			fmt.Printf("unexpected %s=%s\n", k, v)
			os.Exit(2)
		}
	}
	if len(os.Args) == 3 && os.Args[1] == "-download" {
		download(os.Args[2])
		return
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for _, u := range os.Args[1:] {
		resp, err := c.Get(u)
		if err != nil {
			fmt.Printf("%s -> error: %v\n", u, err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s -> %s\n", u, strings.TrimSpace(string(b)))
	}
	fmt.Fprintln(os.Stderr, "probe done")
}

// download reads a URL to the end and prints the throughput (benchmarks).
func download(u string) {
	start := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		fmt.Printf("error after %d bytes: %v\n", n, err)
		os.Exit(1)
	}
	d := time.Since(start)
	fmt.Printf("downloaded %d bytes in %.3fs: %.1f MB/s\n", n, d.Seconds(), float64(n)/d.Seconds()/1e6)
}
