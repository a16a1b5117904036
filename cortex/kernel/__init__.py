"""The stateless kernel: protocol parser, decider, policies and the service loop."""
