//go:build race

package commitlog

// raceDetector reports a build with the race detector, under which
// sync.Pool drops items at random, so that allocation counts mean little.
const raceDetector = true
