"""After a crash: the flight recorder ring, the kernel log watch, the postmortem."""
