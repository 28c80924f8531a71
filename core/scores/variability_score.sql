-- Data-map variability: standard deviation (ddof 0) of the probability of the label; ranks label noise the wrong way round (mislabeled examples sit at low variability).
-- audit: no
stddev_pop(p_true)
