// Command pfwd is pfw's daemon: it installs the nftables table, decides
// the packets the kernel queues to it, and logs blocks to SQLite.
//
// This package is the command line only: flags and their environment
// variables (PFW_CONFIG, PFW_DB, PFW_LOG_FILE, PFW_SOCKET), the log's
// destination and format, signals (SIGINT/SIGTERM stop, SIGHUP reloads),
// and systemd's notifications; package daemon does the rest. Usage
// errors exit 2, a failed start 1. See `pfwd -h` and the README. Its tests
// include the end-to-end suite, which runs the real binary in network
// namespaces it creates (harness_test.go), and the load benchmark
// (load_bench_test.go, `make bench`).
package main
