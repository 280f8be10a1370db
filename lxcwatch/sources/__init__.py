"""I/O: the handles that read a host (live or a tree): root, NICs, links, netlink, ethtool, cgroups, LXC, probes."""
