"""Deployment helpers: system packages, the Pi service, reference services, the censorship lab."""
