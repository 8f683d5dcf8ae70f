//go:build !race

package bboltstore

const raceEnabled = false
