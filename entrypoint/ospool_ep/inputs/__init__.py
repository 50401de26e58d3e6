"""What the site said, validated: value parsers, the variable table, settings, tokens,
attributes, pools and the START policy. Pure."""
