"""What more than one AlphaPlus service uses: settings, data models, serde, timeframes, metrics."""
