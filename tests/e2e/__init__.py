"""The agent as a process on fixture trees: golden expositions, record/replay, HTTP on loopback (no root-only kernel objects)."""
