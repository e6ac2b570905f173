// Package bench measures oceanhooks: its scripts (overhead.sh, delivery.sh,
// backlog.sh, crash.sh, gobench.sh, profile.sh, run-all.sh) drive the
// programs under bench/cmd against the real binary or the real packages, and
// its Go benchmarks cover hot-path pieces that the packages' own benchmarks
// do not. README.md says how to run them; BENCHMARKS.md at the repository
// root holds the figures. Nothing here runs in CI beyond compiling and vet.
package bench
