-- Mean loss of the label as trained over the example's observations, in nats; higher = more suspect.
-- audit: mean_loss
avg(loss)
