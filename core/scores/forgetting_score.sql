-- Forgetting events (Toneva et al.): correct → incorrect transitions between consecutive observations; never learned = number of observations; higher = more suspect.
-- audit: forgetting
case when bool_or(correct) then count(*) filter (where was_correct and not correct) else count(*) end
