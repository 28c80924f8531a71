-- Loss at the example's last observation, in nats; higher = more suspect.
-- audit: final_loss
arg_max(loss, epoch)
