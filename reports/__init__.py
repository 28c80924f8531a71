"""Everything that renders lossaudit's analysis: figures, galleries, the HTML page and its JSON twin."""
