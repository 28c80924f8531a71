-- lossaudit database schema. The columns are the contract between the trainer (the only writer)
-- and every reader (queries, metrics, report, audit). Each column is documented twice: here, and
-- inside the database itself (COMMENT ON), so `select comment from duckdb_columns()` explains it.
--
-- Glossary: run_id identifies one training run; example_id is the stable index of an example in
-- the clean training split; step counts optimizer steps from 0; epoch counts passes of a fresh
-- permutation of the training set as candidates; backprops counts examples back-propagated.

create table if not exists meta (
    key   varchar primary key,
    value varchar
);

create table if not exists runs (
    run_id          integer primary key,
    method          varchar not null,
    dataset         varchar not null,
    model           varchar not null,
    corruption      varchar not null,
    corruption_kind varchar,
    corrupt_frac    double not null,
    seed            integer not null,
    n_train         integer not null,
    n_test          integer not null,
    n_classes       integer not null,
    classes         varchar[] not null,
    epochs          integer not null,
    epochs_done     integer not null,
    config          json not null,
    command         varchar,
    version         varchar not null,
    torch_version   varchar,
    device          varchar,
    host            varchar,
    pid             integer,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    status          varchar not null check (status in ('running', 'complete', 'failed', 'interrupted')),
    error           varchar
);

create table if not exists examples (
    run_id       integer not null,
    example_id   integer not null,
    label        smallint not null,
    true_label   smallint not null,
    corruption   varchar,
    is_corrupted boolean not null,
    source       varchar not null,
    role         varchar not null default 'train' check (role in ('train', 'holdout', 'canary', 'replaced')),
    irreducible_loss float
);

create table if not exists observations (
    run_id      integer not null,
    step        integer not null,
    epoch       integer not null,
    example_id  integer not null,
    mode        varchar not null,
    loss        float not null,
    entropy     float not null,
    margin      float not null,
    p_true      float not null,
    pred        smallint not null,
    select_prob float not null,
    picked      smallint not null,
    stale       boolean not null
);

create table if not exists steps (
    run_id            integer not null,
    step              integer not null,
    epoch             integer not null,
    lr                double not null,
    n_scored          integer not null,
    n_backprop        integer not null,
    forwards_scoring  bigint not null,
    forwards_training bigint not null,
    backprops         bigint not null,
    train_loss        float not null,
    state             map(varchar, double),
    seconds           double not null
);

create table if not exists evals (
    run_id            integer not null,
    step              integer not null,
    epoch             integer not null,
    backprops         bigint not null,
    forwards          bigint not null,
    forwards_scoring  bigint not null,
    forwards_training bigint not null,
    seconds           double not null,
    test_loss         double not null,
    test_error        double not null,
    train_loss        double
);

comment on column meta.key is 'Setting name, e.g. schema_version.';
comment on column meta.value is 'Setting value as text.';

comment on column runs.run_id is 'Run identifier, 1, 2, ... in the order runs started in this database.';
comment on column runs.method is 'Selection method name as given (a registry name or preset, e.g. sgd, sb50).';
comment on column runs.dataset is 'Dataset spec, e.g. digits or imagefolder:/data/cifar10.';
comment on column runs.model is 'Model name from the model registry, e.g. resnet8 or wrn-28-10.';
comment on column runs.corruption is 'Corruption spec KIND:SHARE, or none.';
comment on column runs.corruption_kind is 'Corruption kind (random_labels, shuffle_pixels, gaussian); NULL for none.';
comment on column runs.corrupt_frac is 'Share of training examples selected for corruption, 0 for none.';
comment on column runs.seed is 'Seed used for model initialisation, candidate order, augmentation, selection and corruption.';
comment on column runs.n_train is 'Number of training examples (N).';
comment on column runs.n_test is 'Number of test examples.';
comment on column runs.n_classes is 'Number of classes (K).';
comment on column runs.classes is 'Class names; a label is an index into this list.';
comment on column runs.epochs is 'Planned number of epochs (passes of the training set as candidates).';
comment on column runs.epochs_done is 'Epochs whose observations, steps and evals are committed.';
comment on column runs.config is 'The resolved run configuration (every setting, defaults included) as JSON.';
comment on column runs.command is 'The command line that started the run.';
comment on column runs.version is 'lossaudit version that wrote the run.';
comment on column runs.torch_version is 'PyTorch version used for training.';
comment on column runs.device is 'Device the run trained on, e.g. cpu or cuda:0.';
comment on column runs.host is 'Host name of the training process.';
comment on column runs.pid is 'Process id of the training process (used to detect runs killed without notice).';
comment on column runs.started_at is 'When the run started.';
comment on column runs.finished_at is 'When the run ended (complete, failed or interrupted); NULL while running.';
comment on column runs.status is 'running, complete, failed or interrupted. A run killed without notice stays running until the next lossaudit run on this host marks it interrupted.';
comment on column runs.error is 'One-line reason a run failed or was interrupted; NULL otherwise.';

comment on column examples.run_id is 'Run the example belongs to.';
comment on column examples.example_id is 'Stable index of the example in the clean training split.';
comment on column examples.label is 'Label as trained (after corruption).';
comment on column examples.true_label is 'Label before corruption.';
comment on column examples.corruption is 'Corruption kind applied to this example, NULL if none.';
comment on column examples.is_corrupted is 'True if the example was selected for corruption. For random_labels about 1/K of these keep their label by chance; label != true_label marks the changed ones.';
comment on column examples.source is 'Where the example came from: a file path, or dataset:index.';
comment on column examples.role is 'train = a candidate for training; holdout = kept out of training to fit an irreducible-loss model (rho); canary = a corrupted copy of a training example added as a known positive (--canaries, lossaudit audit); replaced = an original that a random-label canary stands in for, not trained.';
comment on column examples.irreducible_loss is 'rho: loss of the irreducible-loss model on this example (eval mode, no augmentation); NULL for other methods.';

comment on column observations.run_id is 'Run of the observation.';
comment on column observations.step is 'Optimizer step about to be taken when this forward ran (0-based).';
comment on column observations.epoch is 'Epoch (0-based) in which the example was a candidate.';
comment on column observations.example_id is 'Example observed.';
comment on column observations.mode is 'Forward that produced the row: score = no-grad eval-mode scoring forward; train = train-mode forward of a training step.';
comment on column observations.loss is 'Cross-entropy of the label as trained, in nats.';
comment on column observations.entropy is 'Entropy of the predicted distribution, -sum p log p, in nats.';
comment on column observations.margin is 'Logit of the label as trained minus the largest other logit (negative = misclassified).';
comment on column observations.p_true is 'Softmax probability of the label as trained.';
comment on column observations.pred is 'Predicted class (argmax of the logits).';
comment on column observations.select_prob is 'Probability the method gave this example of being picked (per draw for samplers with replacement); 1 when everything is trained.';
comment on column observations.picked is 'Number of times the example was picked for back-propagation from this observation (can exceed 1 for sampling with replacement).';
comment on column observations.stale is 'True if the values came from a cached earlier forward instead of a fresh one.';

comment on column steps.run_id is 'Run of the step.';
comment on column steps.step is 'Optimizer step index (0-based).';
comment on column steps.epoch is 'Epoch the step belongs to.';
comment on column steps.lr is 'Learning rate used for this step.';
comment on column steps.n_scored is 'Examples scored by no-grad forwards since the previous step.';
comment on column steps.n_backprop is 'Examples back-propagated in this step (the batch size, except an epoch''s last step).';
comment on column steps.forwards_scoring is 'Cumulative examples forwarded for scoring (no grad) up to and including this step.';
comment on column steps.forwards_training is 'Cumulative examples forwarded in training (with grad) up to and including this step.';
comment on column steps.backprops is 'Cumulative examples back-propagated up to and including this step.';
comment on column steps.train_loss is 'Mean training loss of the step''s batch (as optimised).';
comment on column steps.state is 'Method state after the step, e.g. tau and is_on for vr, history_size for sb.';
comment on column steps.seconds is 'Training wall-clock seconds since the run started, evaluation time excluded.';

comment on column evals.run_id is 'Run of the evaluation.';
comment on column evals.step is 'Optimizer steps taken before the evaluation.';
comment on column evals.epoch is 'Epoch during which the evaluation ran.';
comment on column evals.backprops is 'Cumulative examples back-propagated before the evaluation (the paper''s x-axis).';
comment on column evals.forwards is 'Cumulative examples forwarded (scoring plus training).';
comment on column evals.forwards_scoring is 'Cumulative examples forwarded for scoring (no grad).';
comment on column evals.forwards_training is 'Cumulative examples forwarded in training (with grad).';
comment on column evals.seconds is 'Training wall-clock seconds before the evaluation, evaluation time excluded.';
comment on column evals.test_loss is 'Mean cross-entropy on the test split (never corrupted).';
comment on column evals.test_error is 'Share of test examples misclassified, 0..1.';
comment on column evals.train_loss is 'Mean training loss of the steps since the previous evaluation; NULL at step 0.';
