//go:build race

package bboltstore

// raceEnabled scales down the tests that build large stores: the race
// detector makes them several times slower.
const raceEnabled = true
