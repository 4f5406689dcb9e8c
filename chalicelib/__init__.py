"""sohbet's deployed library: rules, protocol, models and adapters."""
