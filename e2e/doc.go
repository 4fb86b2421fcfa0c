// Package e2e holds end-to-end tests that build the real tether binary and
// drive it over real pipes and sockets, as IDE plugins and users do.
package e2e
