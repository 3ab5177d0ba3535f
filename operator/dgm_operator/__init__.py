"""dgm-operator: a Darwin Goedel Machine style self-improvement loop as a Kubernetes operator."""

__version__ = "0.1.0"
