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
