package channel

import "github.com/tether-dev/tether/internal/routes"

// Routes says which targets go through the tunnel; it is routes.Routes,
// named here for the callers that configure a Channel.
type Routes = routes.Routes

// ParseRoutes parses the routes of a proxy as written in tether.yaml
// (routes.Parse).
func ParseRoutes(cidrs, domains []string) (Routes, error) { return routes.Parse(cidrs, domains) }
