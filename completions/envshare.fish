# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_envshare_global_optspecs
    string join \n config= h/help V/version
end

function __fish_envshare_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_envshare_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_envshare_using_subcommand
    set -l cmd (__fish_envshare_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c envshare -n "__fish_envshare_needs_command" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_needs_command" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_needs_command" -s V -l version -d 'Print version'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "import" -d 'Enqueue share requests from a CSV or JSONL file (or `-` for stdin)'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "enqueue" -d 'Enqueue share requests for one env and a few appids'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "status" -d 'Show the queue: jobs per state, workers, pause, token and ticket age, a batch\'s progress'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "dead" -d 'List, retry or purge dead jobs'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "events" -d 'Read the result events'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "webhooks" -d 'Webhook deliveries: per-endpoint status, dead deliveries, signature checks'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "ticket" -d 'Manage the component verify ticket'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "serve" -d 'Serve HTTP until SIGTERM/SIGINT: the WeChat callback (verify tickets and authorization events at POST /wechat/callback), /healthz, /readyz and /metrics'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "batch" -d 'Batches: list them, show one\'s progress, write its per-appid results, cancel it'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "job" -d 'Look up a job by id'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "find" -d 'Every share of one appid still on record, newest batch first'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "pause" -d 'Pause the queue: workers take no new job until `envshare resume` (or the end of --for)'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "resume" -d 'End the pause in force now, a manual one or an automatic one (quota spent, token misconfigured)'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "unshare" -d 'Remove env bindings from Mini Programs (batchunshareenv), through the queue with the same retries and events as shares (`share.unshared`). Input as for `import`, or `--env ENV --appid APPID…`'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "sync" -d 'Make the bindings match a file of desired (env, appid) pairs: print the plan (to share, already bound, awaiting confirmation, to unshare with --prune), and with --apply enqueue it as one batch. Running it again enqueues nothing new'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "demo" -d 'Run the whole pipeline on this machine: a fake WeChat API with faults, a worker, an import of generated pairs, live progress and a summary of the events'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "sandbox" -d 'Run the fake WeChat API (for tests and demos) until Ctrl-C'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "completions" -d 'Print a shell completion script to standard output (e.g. `envshare completions bash > /usr/share/bash-completion/completions/envshare`)'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "man" -d 'Write the man pages (`envshare.1` and one `envshare-<subcommand>.1` per subcommand) into a directory; the repository keeps them in docs/man'
complete -c envshare -n "__fish_envshare_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand import" -l format -d 'The input format (default: from the extension .csv / .jsonl / .ndjson, else from the first line)' -r -f -a "csv\t'CSV with a header naming `env` and `appid`'
jsonl\t'One JSON object per line: `{"env","appid"}` or `{"env","appids":[…]}`'"
complete -c envshare -n "__fish_envshare_using_subcommand import" -l max-errors -d 'Invalid lines to list before summing up the rest' -r
complete -c envshare -n "__fish_envshare_using_subcommand import" -l batch -d 'The batch id to enqueue into (default: a new `b-<ULID>`)' -r
complete -c envshare -n "__fish_envshare_using_subcommand import" -l chunk-size -d 'Appids per job (default: ENVSHARE_CHUNK_SIZE, 10)' -r
complete -c envshare -n "__fish_envshare_using_subcommand import" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand import" -l skip-invalid -d 'Enqueue the valid rows and report the invalid ones instead of enqueueing nothing'
complete -c envshare -n "__fish_envshare_using_subcommand import" -l dry-run -d 'Show what would be enqueued; touch nothing'
complete -c envshare -n "__fish_envshare_using_subcommand import" -l force -d 'Enqueue pairs even if they are already queued within the dedupe window'
complete -c envshare -n "__fish_envshare_using_subcommand import" -l skip-bound -d 'Ask WeChat (batchgetenvid, ENVSHARE_CONFIRM_BATCH appids per call, within ENVSHARE_RATE_LIMIT) which pairs are already bound, and enqueue no job for those. Needs a token (ENVSHARE_ACCESS_TOKEN, or the component credentials and a stored ticket)'
complete -c envshare -n "__fish_envshare_using_subcommand import" -l json -d 'Print one JSON summary object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l env -d 'The cloud environment to share' -r
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l appid -d 'The Mini Programs to share it with (repeat the flag or give several values)' -r
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l batch -d 'The batch id to enqueue into (default: a new `b-<ULID>`)' -r
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l chunk-size -d 'Appids per job (default: ENVSHARE_CHUNK_SIZE, 10)' -r
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l dry-run -d 'Show what would be enqueued; touch nothing'
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l force -d 'Enqueue pairs even if they are already queued within the dedupe window'
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l skip-bound -d 'Ask WeChat (batchgetenvid, ENVSHARE_CONFIRM_BATCH appids per call, within ENVSHARE_RATE_LIMIT) which pairs are already bound, and enqueue no job for those. Needs a token (ENVSHARE_ACCESS_TOKEN, or the component credentials and a stored ticket)'
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -l json -d 'Print one JSON summary object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand enqueue" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand status" -l batch -d 'Show this batch\'s progress too' -r
complete -c envshare -n "__fish_envshare_using_subcommand status" -l interval-ms -d 'Refresh interval for --watch, in milliseconds' -r
complete -c envshare -n "__fish_envshare_using_subcommand status" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand status" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand status" -l watch -d 'With --batch: follow the batch with a progress bar until it completes; without it: refresh the status every interval until Ctrl-C'
complete -c envshare -n "__fish_envshare_using_subcommand status" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -f -a "list" -d 'List dead jobs, most recent first'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -f -a "retry" -d 'Put dead jobs back in the ready queue'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -f -a "purge" -d 'Delete dead jobs for good'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and not __fish_seen_subcommand_from list retry purge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from list" -l offset -d 'Skip this many dead jobs' -r
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from list" -l limit -d 'Show at most this many' -r
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from list" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (one array) instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from retry" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from retry" -l all -d 'Every dead job'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from purge" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from purge" -l all -d 'Every dead job'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from purge" -s y -l yes -d 'Do not ask for confirmation (required when stdin is not a terminal)'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from help" -f -a "list" -d 'List dead jobs, most recent first'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Put dead jobs back in the ready queue'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from help" -f -a "purge" -d 'Delete dead jobs for good'
complete -c envshare -n "__fish_envshare_using_subcommand dead; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand events; and not __fish_seen_subcommand_from tail help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand events; and not __fish_seen_subcommand_from tail help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand events; and not __fish_seen_subcommand_from tail help" -f -a "tail" -d 'Print events as they arrive, as a consumer group member; acks what it printed'
complete -c envshare -n "__fish_envshare_using_subcommand events; and not __fish_seen_subcommand_from tail help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l group -d 'The consumer group (created if missing; an existing group keeps its position)' -r
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l consumer -d 'The consumer name within the group (default: host-pid)' -r
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l count -d 'Stop after this many events (default: follow until Ctrl-C)' -r
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l from-start -d 'When the group is new, start from the oldest event kept instead of new ones'
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -l json -d 'Print each event\'s JSON as stored instead of a readable line'
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from tail" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "tail" -d 'Print events as they arrive, as a consumer group member; acks what it printed'
complete -c envshare -n "__fish_envshare_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -f -a "status" -d 'Per endpoint: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event\'s age and the last error'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -f -a "dead" -d 'List or re-send deliveries that were given up'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -f -a "verify" -d 'Check an `Envshare-Signature` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and not __fish_seen_subcommand_from status dead verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from status" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from status" -l json -d 'Print JSON (one array) instead of a table'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from dead" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from dead" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from dead" -f -a "list" -d 'List dead deliveries, oldest first, per endpoint'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from dead" -f -a "retry" -d 'Schedule dead deliveries again, due now, with attempts and max age starting over'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from dead" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -l secret -d 'The shared secret' -r
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -l header -d 'The `Envshare-Signature` header value (`t=…,v1=…`)' -r
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -l tolerance -d 'Also reject a signature made more than this many seconds from now' -r
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -l json -d 'Print the result as JSON'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "status" -d 'Per endpoint: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event\'s age and the last error'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "dead" -d 'List or re-send deliveries that were given up'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check an `Envshare-Signature` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)'
complete -c envshare -n "__fish_envshare_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and not __fish_seen_subcommand_from set request help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and not __fish_seen_subcommand_from set request help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and not __fish_seen_subcommand_from set request help" -f -a "set" -d 'Store the component verify ticket WeChat pushed to the callback (never echoed)'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and not __fish_seen_subcommand_from set request help" -f -a "request" -d 'Ask WeChat to push a fresh verify ticket to the platform\'s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers\' own requests'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and not __fish_seen_subcommand_from set request help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from set" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from request" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from request" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from help" -f -a "set" -d 'Store the component verify ticket WeChat pushed to the callback (never echoed)'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from help" -f -a "request" -d 'Ask WeChat to push a fresh verify ticket to the platform\'s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers\' own requests'
complete -c envshare -n "__fish_envshare_using_subcommand ticket; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand serve" -l addr -d 'The address to listen on, overriding ENVSHARE_SERVE_ADDR (default 127.0.0.1:8080; port 0 picks a free port). A non-loopback address needs ENVSHARE_API_TOKEN' -r
complete -c envshare -n "__fish_envshare_using_subcommand serve" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand serve" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -f -a "list" -d 'List batches on record, newest first, with their progress'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -f -a "show" -d 'Show one batch: progress, confirmation, appids per result state'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -f -a "results" -d 'Write a batch\'s per-appid results (confirmation URLs, failures) as CSV or JSONL'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -f -a "cancel" -d 'Cancel a batch: its waiting jobs leave the queue and their appids end `cancelled`; running jobs finish. A batch that already completed is left as it is'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and not __fish_seen_subcommand_from list show results cancel help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from list" -l limit -d 'Show at most this many' -r
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from list" -l offset -d 'Skip this many of the newest first' -r
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from list" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON array instead of a table'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from show" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -l format -d 'The output format' -r -f -a "csv\t'CSV with a header row (RFC 4180: CRLF line ends, quoted where needed), UTF-8'
jsonl\t'One JSON object per line, with the CSV\'s columns as keys'"
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -l state -d 'Only the appids in this state' -r -f -a "pending\t'Not answered by WeChat yet (waiting, running or retrying)'
accepted\t'Shared; waiting for the administrator to open the confirmation URL'
failed\t'Failed for good'
bound\t'Confirmed: the binding is live'
unconfirmed\t'The confirmation window ended without the binding'
cancelled\t'Cancelled before it ran'
unshared\t'The binding was removed'"
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -s o -l out -d 'Write to this file instead of standard output (replaced whole, only once complete)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -l bom -d 'Start a CSV with a UTF-8 byte order mark, so Excel reads it as UTF-8'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -l json -d 'The same as `--format jsonl`'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from results" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from cancel" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from cancel" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from help" -f -a "list" -d 'List batches on record, newest first, with their progress'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one batch: progress, confirmation, appids per result state'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from help" -f -a "results" -d 'Write a batch\'s per-appid results (confirmation URLs, failures) as CSV or JSONL'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a batch: its waiting jobs leave the queue and their appids end `cancelled`; running jobs finish. A batch that already completed is left as it is'
complete -c envshare -n "__fish_envshare_using_subcommand batch; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand job; and not __fish_seen_subcommand_from show help" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand job; and not __fish_seen_subcommand_from show help" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand job; and not __fish_seen_subcommand_from show help" -f -a "show" -d 'Show a job: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids\' outcome'
complete -c envshare -n "__fish_envshare_using_subcommand job; and not __fish_seen_subcommand_from show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand job; and __fish_seen_subcommand_from show" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand job; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand job; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a job: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids\' outcome'
complete -c envshare -n "__fish_envshare_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand find" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand find" -l json -d 'Print the rows as one JSON array instead of a table'
complete -c envshare -n "__fish_envshare_using_subcommand find" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand pause" -l reason -d 'Why (shown by `status`, the workers\' /readyz and their logs)' -r
complete -c envshare -n "__fish_envshare_using_subcommand pause" -l for -d 'How long (`30m`, `2h`, `1d`, `1h 30m`); without it the pause lasts until `envshare resume`' -r
complete -c envshare -n "__fish_envshare_using_subcommand pause" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand pause" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand pause" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand resume" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand resume" -l json -d 'Print one JSON object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand resume" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l env -d 'The cloud environment to unshare (with --appid)' -r
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l appid -d 'The Mini Programs to unshare it from (with --env; repeat the flag or give several values)' -r
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l format -d 'The input format of FILE (default: from the extension, else from the first line)' -r -f -a "csv\t'CSV with a header naming `env` and `appid`'
jsonl\t'One JSON object per line: `{"env","appid"}` or `{"env","appids":[…]}`'"
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l max-errors -d 'Invalid lines to list before summing up the rest' -r
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l batch -d 'The batch id to enqueue into (default: a new `b-<ULID>`)' -r
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l chunk-size -d 'Appids per job (default: ENVSHARE_CHUNK_SIZE, 10)' -r
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l skip-invalid -d 'Enqueue the valid rows of FILE and report the invalid ones instead of enqueueing nothing'
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l dry-run -d 'Show what would be enqueued; touch nothing'
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l force -d 'Enqueue pairs even if an unshare of them is already queued within the dedupe window'
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -l json -d 'Print one JSON summary object instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand unshare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l format -d 'The input format (default: from the extension, else from the first line)' -r -f -a "csv\t'CSV with a header naming `env` and `appid`'
jsonl\t'One JSON object per line: `{"env","appid"}` or `{"env","appids":[…]}`'"
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l batch -d 'The batch id to enqueue into (default: a new `b-<ULID>`)' -r
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l chunk-size -d 'Appids per job (default: ENVSHARE_CHUNK_SIZE, 10)' -r
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l prune -d 'Also plan to unshare the bindings of the file\'s envs that the file does not list'
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l apply -d 'Enqueue the plan as one batch (without it, only print the plan)'
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l yes -d 'With --apply --prune: do not ask before unsharing (required when not on a terminal)'
complete -c envshare -n "__fish_envshare_using_subcommand sync" -l json -d 'Print one JSON object (the plan, and what was enqueued) instead of text'
complete -c envshare -n "__fish_envshare_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c envshare -n "__fish_envshare_using_subcommand demo" -l pairs -d 'How many (env, appid) pairs to generate and import' -r
complete -c envshare -n "__fish_envshare_using_subcommand demo" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand demo" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand sandbox" -l addr -d 'The address to listen on (port 0 picks a free port)' -r
complete -c envshare -n "__fish_envshare_using_subcommand sandbox" -l preset -d 'How the fake API behaves' -r -f -a "demo\t'Latency 20–200 ms, some errcode -1 and HTTP 502, tokens that expire after 300 calls, appids ending in `bad` rejected'
clean\t'No latency and no faults'"
complete -c envshare -n "__fish_envshare_using_subcommand sandbox" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand sandbox" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c envshare -n "__fish_envshare_using_subcommand completions" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand completions" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand man" -l out-dir -d 'The directory to write the pages into (created if missing; pages there are replaced)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand man" -l config -d 'A TOML settings file (same names as the environment variables, lower-case, no prefix)' -r -F
complete -c envshare -n "__fish_envshare_using_subcommand man" -s h -l help -d 'Print help'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "import" -d 'Enqueue share requests from a CSV or JSONL file (or `-` for stdin)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "enqueue" -d 'Enqueue share requests for one env and a few appids'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "status" -d 'Show the queue: jobs per state, workers, pause, token and ticket age, a batch\'s progress'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "dead" -d 'List, retry or purge dead jobs'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "events" -d 'Read the result events'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "webhooks" -d 'Webhook deliveries: per-endpoint status, dead deliveries, signature checks'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "ticket" -d 'Manage the component verify ticket'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "serve" -d 'Serve HTTP until SIGTERM/SIGINT: the WeChat callback (verify tickets and authorization events at POST /wechat/callback), /healthz, /readyz and /metrics'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "batch" -d 'Batches: list them, show one\'s progress, write its per-appid results, cancel it'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "job" -d 'Look up a job by id'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "find" -d 'Every share of one appid still on record, newest batch first'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "pause" -d 'Pause the queue: workers take no new job until `envshare resume` (or the end of --for)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "resume" -d 'End the pause in force now, a manual one or an automatic one (quota spent, token misconfigured)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "unshare" -d 'Remove env bindings from Mini Programs (batchunshareenv), through the queue with the same retries and events as shares (`share.unshared`). Input as for `import`, or `--env ENV --appid APPID…`'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "sync" -d 'Make the bindings match a file of desired (env, appid) pairs: print the plan (to share, already bound, awaiting confirmation, to unshare with --prune), and with --apply enqueue it as one batch. Running it again enqueues nothing new'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "demo" -d 'Run the whole pipeline on this machine: a fake WeChat API with faults, a worker, an import of generated pairs, live progress and a summary of the events'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "sandbox" -d 'Run the fake WeChat API (for tests and demos) until Ctrl-C'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "completions" -d 'Print a shell completion script to standard output (e.g. `envshare completions bash > /usr/share/bash-completion/completions/envshare`)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "man" -d 'Write the man pages (`envshare.1` and one `envshare-<subcommand>.1` per subcommand) into a directory; the repository keeps them in docs/man'
complete -c envshare -n "__fish_envshare_using_subcommand help; and not __fish_seen_subcommand_from import enqueue status dead events webhooks ticket serve batch job find pause resume unshare sync demo sandbox completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from dead" -f -a "list" -d 'List dead jobs, most recent first'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from dead" -f -a "retry" -d 'Put dead jobs back in the ready queue'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from dead" -f -a "purge" -d 'Delete dead jobs for good'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from events" -f -a "tail" -d 'Print events as they arrive, as a consumer group member; acks what it printed'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "status" -d 'Per endpoint: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event\'s age and the last error'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "dead" -d 'List or re-send deliveries that were given up'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "verify" -d 'Check an `Envshare-Signature` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from ticket" -f -a "set" -d 'Store the component verify ticket WeChat pushed to the callback (never echoed)'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from ticket" -f -a "request" -d 'Ask WeChat to push a fresh verify ticket to the platform\'s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers\' own requests'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from batch" -f -a "list" -d 'List batches on record, newest first, with their progress'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from batch" -f -a "show" -d 'Show one batch: progress, confirmation, appids per result state'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from batch" -f -a "results" -d 'Write a batch\'s per-appid results (confirmation URLs, failures) as CSV or JSONL'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from batch" -f -a "cancel" -d 'Cancel a batch: its waiting jobs leave the queue and their appids end `cancelled`; running jobs finish. A batch that already completed is left as it is'
complete -c envshare -n "__fish_envshare_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "show" -d 'Show a job: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids\' outcome'
