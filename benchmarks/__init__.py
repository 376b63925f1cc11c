"""What methods are measured on (streams, models, metrics) and the machinery that measures
(the cell runner, the grid runner, the report)."""
