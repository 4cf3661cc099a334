"""CLI commands: the entry layer, the only part of recon/ that may import viewer/ and exporters/."""
