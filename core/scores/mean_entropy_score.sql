-- Mean entropy of the prediction over the example's observations, in nats; label-blind; higher = more suspect.
-- audit: mean_entropy
avg(entropy)
