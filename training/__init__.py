"""Everything that produces lossaudit's logs: config, datasets, corruptions, models, selection methods, the trainer."""
