"""The live kernel and host: network namespaces, veth, perf, tracefs, mounts, real LXC containers (root)."""
