//go:build race

package e2e

func init() { raceFlag = []string{"-race"} }
