"""Helpers of the test tiers: the agent as a process, network and LXC labs, trace generators, the alerting lab."""
