"""From a user's request to a submission plan: validation, planning and script rendering (pure)."""
