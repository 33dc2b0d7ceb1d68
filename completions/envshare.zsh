#compdef envshare

autoload -U is-at-least

_envshare() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_envshare_commands" \
"*::: :->envshare" \
&& ret=0
    case $state in
    (envshare)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-command-$line[1]:"
        case $line[1] in
            (import)
_arguments "${_arguments_options[@]}" : \
'--format=[The input format (default\: from the extension .csv / .jsonl / .ndjson, else from the first line)]:FORMAT:((csv\:"CSV with a header naming \`env\` and \`appid\`"
jsonl\:"One JSON object per line\: \`{"env","appid"}\` or \`{"env","appids"\:\[…\]}\`"))' \
'--max-errors=[Invalid lines to list before summing up the rest]:N:_default' \
'--batch=[The batch id to enqueue into (default\: a new \`b-<ULID>\`)]:ID:_default' \
'--chunk-size=[Appids per job (default\: ENVSHARE_CHUNK_SIZE, 10)]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--skip-invalid[Enqueue the valid rows and report the invalid ones instead of enqueueing nothing]' \
'--dry-run[Show what would be enqueued; touch nothing]' \
'--force[Enqueue pairs even if they are already queued within the dedupe window]' \
'--skip-bound[Ask WeChat (batchgetenvid, ENVSHARE_CONFIRM_BATCH appids per call, within ENVSHARE_RATE_LIMIT) which pairs are already bound, and enqueue no job for those. Needs a token (ENVSHARE_ACCESS_TOKEN, or the component credentials and a stored ticket)]' \
'--json[Print one JSON summary object instead of text]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':file -- The file to import, or `-` for standard input:_files' \
&& ret=0
;;
(enqueue)
_arguments "${_arguments_options[@]}" : \
'--env=[The cloud environment to share]:ENV:_default' \
'*--appid=[The Mini Programs to share it with (repeat the flag or give several values)]:APPID:_default' \
'--batch=[The batch id to enqueue into (default\: a new \`b-<ULID>\`)]:ID:_default' \
'--chunk-size=[Appids per job (default\: ENVSHARE_CHUNK_SIZE, 10)]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--dry-run[Show what would be enqueued; touch nothing]' \
'--force[Enqueue pairs even if they are already queued within the dedupe window]' \
'--skip-bound[Ask WeChat (batchgetenvid, ENVSHARE_CONFIRM_BATCH appids per call, within ENVSHARE_RATE_LIMIT) which pairs are already bound, and enqueue no job for those. Needs a token (ENVSHARE_ACCESS_TOKEN, or the component credentials and a stored ticket)]' \
'--json[Print one JSON summary object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'--batch=[Show this batch'\''s progress too]:ID:_default' \
'--interval-ms=[Refresh interval for --watch, in milliseconds]:MS:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'--watch[With --batch\: follow the batch with a progress bar until it completes; without it\: refresh the status every interval until Ctrl-C]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(dead)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__dead_commands" \
"*::: :->dead" \
&& ret=0

    case $state in
    (dead)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-dead-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
'--offset=[Skip this many dead jobs]:OFFSET:_default' \
'--limit=[Show at most this many]:LIMIT:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print JSON (one array) instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--all[Every dead job]' \
'-h[Print help]' \
'--help[Print help]' \
'*::ids -- Job ids:_default' \
&& ret=0
;;
(purge)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--all[Every dead job]' \
'-y[Do not ask for confirmation (required when stdin is not a terminal)]' \
'--yes[Do not ask for confirmation (required when stdin is not a terminal)]' \
'-h[Print help]' \
'--help[Print help]' \
'*::ids -- Job ids:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__dead__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-dead-help-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(purge)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(events)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__events_commands" \
"*::: :->events" \
&& ret=0

    case $state in
    (events)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-events-command-$line[1]:"
        case $line[1] in
            (tail)
_arguments "${_arguments_options[@]}" : \
'--group=[The consumer group (created if missing; an existing group keeps its position)]:GROUP:_default' \
'--consumer=[The consumer name within the group (default\: host-pid)]:CONSUMER:_default' \
'--count=[Stop after this many events (default\: follow until Ctrl-C)]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--from-start[When the group is new, start from the oldest event kept instead of new ones]' \
'--json[Print each event'\''s JSON as stored instead of a readable line]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__events__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-events-help-command-$line[1]:"
        case $line[1] in
            (tail)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(webhooks)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__webhooks_commands" \
"*::: :->webhooks" \
&& ret=0

    case $state in
    (webhooks)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-webhooks-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print JSON (one array) instead of a table]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(dead)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__webhooks__subcmd__dead_commands" \
"*::: :->dead" \
&& ret=0

    case $state in
    (dead)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-webhooks-dead-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
'--endpoint=[Only this endpoint (its id, from \`envshare webhooks status\`)]:ID:_default' \
'--limit=[Show at most this many per endpoint]:LIMIT:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print JSON (one array) instead of a table]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
'--endpoint=[Only this endpoint (its id, from \`envshare webhooks status\`)]:ID:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--all[Every dead delivery]' \
'--json[Print the count as JSON]' \
'-h[Print help]' \
'--help[Print help]' \
'*::ids -- Event ids:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__webhooks__subcmd__dead__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-webhooks-dead-help-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(verify)
_arguments "${_arguments_options[@]}" : \
'--secret=[The shared secret]:SECRET:_default' \
'--header=[The \`Envshare-Signature\` header value (\`t=…,v1=…\`)]:H:_default' \
'--tolerance=[Also reject a signature made more than this many seconds from now]:SECONDS:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print the result as JSON]' \
'-h[Print help]' \
'--help[Print help]' \
':body -- The request body, byte for byte (`-` for stdin):_files' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__webhooks__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-webhooks-help-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(dead)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__webhooks__subcmd__help__subcmd__dead_commands" \
"*::: :->dead" \
&& ret=0

    case $state in
    (dead)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-webhooks-help-dead-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(verify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(ticket)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__ticket_commands" \
"*::: :->ticket" \
&& ret=0

    case $state in
    (ticket)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-ticket-command-$line[1]:"
        case $line[1] in
            (set)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
':ticket -- The ticket, or `-` to read it from standard input (keeps it out of shell history):_default' \
&& ret=0
;;
(request)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__ticket__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-ticket-help-command-$line[1]:"
        case $line[1] in
            (set)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(request)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(serve)
_arguments "${_arguments_options[@]}" : \
'--addr=[The address to listen on, overriding ENVSHARE_SERVE_ADDR (default 127.0.0.1\:8080; port 0 picks a free port). A non-loopback address needs ENVSHARE_API_TOKEN]:HOST:PORT:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(batch)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__batch_commands" \
"*::: :->batch" \
&& ret=0

    case $state in
    (batch)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-batch-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
'--limit=[Show at most this many]:N:_default' \
'--offset=[Skip this many of the newest first]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON array instead of a table]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
':id -- The batch id (`envshare batch list` shows them):_default' \
&& ret=0
;;
(results)
_arguments "${_arguments_options[@]}" : \
'--format=[The output format]:FORMAT:((csv\:"CSV with a header row (RFC 4180\: CRLF line ends, quoted where needed), UTF-8"
jsonl\:"One JSON object per line, with the CSV'\''s columns as keys"))' \
'--state=[Only the appids in this state]:STATE:((pending\:"Not answered by WeChat yet (waiting, running or retrying)"
accepted\:"Shared; waiting for the administrator to open the confirmation URL"
failed\:"Failed for good"
bound\:"Confirmed\: the binding is live"
unconfirmed\:"The confirmation window ended without the binding"
cancelled\:"Cancelled before it ran"
unshared\:"The binding was removed"))' \
'-o+[Write to this file instead of standard output (replaced whole, only once complete)]:FILE:_files' \
'--out=[Write to this file instead of standard output (replaced whole, only once complete)]:FILE:_files' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--bom[Start a CSV with a UTF-8 byte order mark, so Excel reads it as UTF-8]' \
'(--format)--json[The same as \`--format jsonl\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':id -- The batch id (`envshare batch list` shows them):_default' \
&& ret=0
;;
(cancel)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
':id -- The batch id (`envshare batch list` shows them):_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__batch__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-batch-help-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(results)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(cancel)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(job)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
":: :_envshare__subcmd__job_commands" \
"*::: :->job" \
&& ret=0

    case $state in
    (job)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-job-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
':id -- The job id (from the events, `envshare dead list` or `envshare batch results`):_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__job__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-job-help-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(find)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print the rows as one JSON array instead of a table]' \
'-h[Print help]' \
'--help[Print help]' \
':appid -- The Mini Program'\''s appid (`wx` + 16 lowercase hex digits):_default' \
&& ret=0
;;
(pause)
_arguments "${_arguments_options[@]}" : \
'--reason=[Why (shown by \`status\`, the workers'\'' /readyz and their logs)]:TEXT:_default' \
'--for=[How long (\`30m\`, \`2h\`, \`1d\`, \`1h 30m\`); without it the pause lasts until \`envshare resume\`]:DURATION:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--json[Print one JSON object instead of text]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(unshare)
_arguments "${_arguments_options[@]}" : \
'--env=[The cloud environment to unshare (with --appid)]:ENV:_default' \
'*--appid=[The Mini Programs to unshare it from (with --env; repeat the flag or give several values)]:APPID:_default' \
'--format=[The input format of FILE (default\: from the extension, else from the first line)]:FORMAT:((csv\:"CSV with a header naming \`env\` and \`appid\`"
jsonl\:"One JSON object per line\: \`{"env","appid"}\` or \`{"env","appids"\:\[…\]}\`"))' \
'--max-errors=[Invalid lines to list before summing up the rest]:N:_default' \
'--batch=[The batch id to enqueue into (default\: a new \`b-<ULID>\`)]:ID:_default' \
'--chunk-size=[Appids per job (default\: ENVSHARE_CHUNK_SIZE, 10)]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--skip-invalid[Enqueue the valid rows of FILE and report the invalid ones instead of enqueueing nothing]' \
'--dry-run[Show what would be enqueued; touch nothing]' \
'--force[Enqueue pairs even if an unshare of them is already queued within the dedupe window]' \
'--json[Print one JSON summary object instead of text]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'::file -- A file of pairs to unshare (CSV `env,appid` or JSONL, as for `import`), or `-` for standard input; or give --env and --appid instead:_files' \
&& ret=0
;;
(sync)
_arguments "${_arguments_options[@]}" : \
'--format=[The input format (default\: from the extension, else from the first line)]:FORMAT:((csv\:"CSV with a header naming \`env\` and \`appid\`"
jsonl\:"One JSON object per line\: \`{"env","appid"}\` or \`{"env","appids"\:\[…\]}\`"))' \
'--batch=[The batch id to enqueue into (default\: a new \`b-<ULID>\`)]:ID:_default' \
'--chunk-size=[Appids per job (default\: ENVSHARE_CHUNK_SIZE, 10)]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'--prune[Also plan to unshare the bindings of the file'\''s envs that the file does not list]' \
'--apply[Enqueue the plan as one batch (without it, only print the plan)]' \
'--yes[With --apply --prune\: do not ask before unsharing (required when not on a terminal)]' \
'--json[Print one JSON object (the plan, and what was enqueued) instead of text]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':file -- The desired (env, appid) pairs\: CSV `env,appid` or JSONL, as for `import`, or `-` for standard input:_files' \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
'--pairs=[How many (env, appid) pairs to generate and import]:N:_default' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(sandbox)
_arguments "${_arguments_options[@]}" : \
'--addr=[The address to listen on (port 0 picks a free port)]:HOST:PORT:_default' \
'--preset=[How the fake API behaves]:PRESET:((demo\:"Latency 20–200 ms, some errcode -1 and HTTP 502, tokens that expire after 300 calls, appids ending in \`bad\` rejected"
clean\:"No latency and no faults"))' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
':shell -- The shell to complete for:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
'--out-dir=[The directory to write the pages into (created if missing; pages there are replaced)]:DIR:_files' \
'--config=[A TOML settings file (same names as the environment variables, lower-case, no prefix)]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-command-$line[1]:"
        case $line[1] in
            (import)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(enqueue)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(dead)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__dead_commands" \
"*::: :->dead" \
&& ret=0

    case $state in
    (dead)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-dead-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(purge)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(events)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__events_commands" \
"*::: :->events" \
&& ret=0

    case $state in
    (events)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-events-command-$line[1]:"
        case $line[1] in
            (tail)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(webhooks)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__webhooks_commands" \
"*::: :->webhooks" \
&& ret=0

    case $state in
    (webhooks)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-webhooks-command-$line[1]:"
        case $line[1] in
            (status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(dead)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__webhooks__subcmd__dead_commands" \
"*::: :->dead" \
&& ret=0

    case $state in
    (dead)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-webhooks-dead-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(retry)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(verify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(ticket)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__ticket_commands" \
"*::: :->ticket" \
&& ret=0

    case $state in
    (ticket)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-ticket-command-$line[1]:"
        case $line[1] in
            (set)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(request)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(serve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(batch)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__batch_commands" \
"*::: :->batch" \
&& ret=0

    case $state in
    (batch)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-batch-command-$line[1]:"
        case $line[1] in
            (list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(results)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(cancel)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(job)
_arguments "${_arguments_options[@]}" : \
":: :_envshare__subcmd__help__subcmd__job_commands" \
"*::: :->job" \
&& ret=0

    case $state in
    (job)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:envshare-help-job-command-$line[1]:"
        case $line[1] in
            (show)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(find)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(pause)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(resume)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(unshare)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(sync)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(sandbox)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_envshare_commands] )) ||
_envshare_commands() {
    local commands; commands=(
'import:Enqueue share requests from a CSV or JSONL file (or \`-\` for stdin)' \
'enqueue:Enqueue share requests for one env and a few appids' \
'status:Show the queue\: jobs per state, workers, pause, token and ticket age, a batch'\''s progress' \
'dead:List, retry or purge dead jobs' \
'events:Read the result events' \
'webhooks:Webhook deliveries\: per-endpoint status, dead deliveries, signature checks' \
'ticket:Manage the component verify ticket' \
'serve:Serve HTTP until SIGTERM/SIGINT\: the WeChat callback (verify tickets and authorization events at POST /wechat/callback), /healthz, /readyz and /metrics' \
'batch:Batches\: list them, show one'\''s progress, write its per-appid results, cancel it' \
'job:Look up a job by id' \
'find:Every share of one appid still on record, newest batch first' \
'pause:Pause the queue\: workers take no new job until \`envshare resume\` (or the end of --for)' \
'resume:End the pause in force now, a manual one or an automatic one (quota spent, token misconfigured)' \
'unshare:Remove env bindings from Mini Programs (batchunshareenv), through the queue with the same retries and events as shares (\`share.unshared\`). Input as for \`import\`, or \`--env ENV --appid APPID…\`' \
'sync:Make the bindings match a file of desired (env, appid) pairs\: print the plan (to share, already bound, awaiting confirmation, to unshare with --prune), and with --apply enqueue it as one batch. Running it again enqueues nothing new' \
'demo:Run the whole pipeline on this machine\: a fake WeChat API with faults, a worker, an import of generated pairs, live progress and a summary of the events' \
'sandbox:Run the fake WeChat API (for tests and demos) until Ctrl-C' \
'completions:Print a shell completion script to standard output (e.g. \`envshare completions bash > /usr/share/bash-completion/completions/envshare\`)' \
'man:Write the man pages (\`envshare.1\` and one \`envshare-<subcommand>.1\` per subcommand) into a directory; the repository keeps them in docs/man' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch_commands] )) ||
_envshare__subcmd__batch_commands() {
    local commands; commands=(
'list:List batches on record, newest first, with their progress' \
'show:Show one batch\: progress, confirmation, appids per result state' \
'results:Write a batch'\''s per-appid results (confirmation URLs, failures) as CSV or JSONL' \
'cancel:Cancel a batch\: its waiting jobs leave the queue and their appids end \`cancelled\`; running jobs finish. A batch that already completed is left as it is' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare batch commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__cancel_commands] )) ||
_envshare__subcmd__batch__subcmd__cancel_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch cancel commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help_commands] )) ||
_envshare__subcmd__batch__subcmd__help_commands() {
    local commands; commands=(
'list:List batches on record, newest first, with their progress' \
'show:Show one batch\: progress, confirmation, appids per result state' \
'results:Write a batch'\''s per-appid results (confirmation URLs, failures) as CSV or JSONL' \
'cancel:Cancel a batch\: its waiting jobs leave the queue and their appids end \`cancelled\`; running jobs finish. A batch that already completed is left as it is' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare batch help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help__subcmd__cancel_commands] )) ||
_envshare__subcmd__batch__subcmd__help__subcmd__cancel_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch help cancel commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__batch__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help__subcmd__list_commands] )) ||
_envshare__subcmd__batch__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch help list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help__subcmd__results_commands] )) ||
_envshare__subcmd__batch__subcmd__help__subcmd__results_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch help results commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__help__subcmd__show_commands] )) ||
_envshare__subcmd__batch__subcmd__help__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch help show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__list_commands] )) ||
_envshare__subcmd__batch__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__results_commands] )) ||
_envshare__subcmd__batch__subcmd__results_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch results commands' commands "$@"
}
(( $+functions[_envshare__subcmd__batch__subcmd__show_commands] )) ||
_envshare__subcmd__batch__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare batch show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__completions_commands] )) ||
_envshare__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'envshare completions commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead_commands] )) ||
_envshare__subcmd__dead_commands() {
    local commands; commands=(
'list:List dead jobs, most recent first' \
'retry:Put dead jobs back in the ready queue' \
'purge:Delete dead jobs for good' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare dead commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__help_commands] )) ||
_envshare__subcmd__dead__subcmd__help_commands() {
    local commands; commands=(
'list:List dead jobs, most recent first' \
'retry:Put dead jobs back in the ready queue' \
'purge:Delete dead jobs for good' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare dead help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__dead__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__help__subcmd__list_commands] )) ||
_envshare__subcmd__dead__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead help list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__help__subcmd__purge_commands] )) ||
_envshare__subcmd__dead__subcmd__help__subcmd__purge_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead help purge commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__help__subcmd__retry_commands] )) ||
_envshare__subcmd__dead__subcmd__help__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead help retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__list_commands] )) ||
_envshare__subcmd__dead__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__purge_commands] )) ||
_envshare__subcmd__dead__subcmd__purge_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead purge commands' commands "$@"
}
(( $+functions[_envshare__subcmd__dead__subcmd__retry_commands] )) ||
_envshare__subcmd__dead__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare dead retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__demo_commands] )) ||
_envshare__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'envshare demo commands' commands "$@"
}
(( $+functions[_envshare__subcmd__enqueue_commands] )) ||
_envshare__subcmd__enqueue_commands() {
    local commands; commands=()
    _describe -t commands 'envshare enqueue commands' commands "$@"
}
(( $+functions[_envshare__subcmd__events_commands] )) ||
_envshare__subcmd__events_commands() {
    local commands; commands=(
'tail:Print events as they arrive, as a consumer group member; acks what it printed' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare events commands' commands "$@"
}
(( $+functions[_envshare__subcmd__events__subcmd__help_commands] )) ||
_envshare__subcmd__events__subcmd__help_commands() {
    local commands; commands=(
'tail:Print events as they arrive, as a consumer group member; acks what it printed' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare events help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__events__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__events__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare events help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__events__subcmd__help__subcmd__tail_commands] )) ||
_envshare__subcmd__events__subcmd__help__subcmd__tail_commands() {
    local commands; commands=()
    _describe -t commands 'envshare events help tail commands' commands "$@"
}
(( $+functions[_envshare__subcmd__events__subcmd__tail_commands] )) ||
_envshare__subcmd__events__subcmd__tail_commands() {
    local commands; commands=()
    _describe -t commands 'envshare events tail commands' commands "$@"
}
(( $+functions[_envshare__subcmd__find_commands] )) ||
_envshare__subcmd__find_commands() {
    local commands; commands=()
    _describe -t commands 'envshare find commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help_commands] )) ||
_envshare__subcmd__help_commands() {
    local commands; commands=(
'import:Enqueue share requests from a CSV or JSONL file (or \`-\` for stdin)' \
'enqueue:Enqueue share requests for one env and a few appids' \
'status:Show the queue\: jobs per state, workers, pause, token and ticket age, a batch'\''s progress' \
'dead:List, retry or purge dead jobs' \
'events:Read the result events' \
'webhooks:Webhook deliveries\: per-endpoint status, dead deliveries, signature checks' \
'ticket:Manage the component verify ticket' \
'serve:Serve HTTP until SIGTERM/SIGINT\: the WeChat callback (verify tickets and authorization events at POST /wechat/callback), /healthz, /readyz and /metrics' \
'batch:Batches\: list them, show one'\''s progress, write its per-appid results, cancel it' \
'job:Look up a job by id' \
'find:Every share of one appid still on record, newest batch first' \
'pause:Pause the queue\: workers take no new job until \`envshare resume\` (or the end of --for)' \
'resume:End the pause in force now, a manual one or an automatic one (quota spent, token misconfigured)' \
'unshare:Remove env bindings from Mini Programs (batchunshareenv), through the queue with the same retries and events as shares (\`share.unshared\`). Input as for \`import\`, or \`--env ENV --appid APPID…\`' \
'sync:Make the bindings match a file of desired (env, appid) pairs\: print the plan (to share, already bound, awaiting confirmation, to unshare with --prune), and with --apply enqueue it as one batch. Running it again enqueues nothing new' \
'demo:Run the whole pipeline on this machine\: a fake WeChat API with faults, a worker, an import of generated pairs, live progress and a summary of the events' \
'sandbox:Run the fake WeChat API (for tests and demos) until Ctrl-C' \
'completions:Print a shell completion script to standard output (e.g. \`envshare completions bash > /usr/share/bash-completion/completions/envshare\`)' \
'man:Write the man pages (\`envshare.1\` and one \`envshare-<subcommand>.1\` per subcommand) into a directory; the repository keeps them in docs/man' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__batch_commands] )) ||
_envshare__subcmd__help__subcmd__batch_commands() {
    local commands; commands=(
'list:List batches on record, newest first, with their progress' \
'show:Show one batch\: progress, confirmation, appids per result state' \
'results:Write a batch'\''s per-appid results (confirmation URLs, failures) as CSV or JSONL' \
'cancel:Cancel a batch\: its waiting jobs leave the queue and their appids end \`cancelled\`; running jobs finish. A batch that already completed is left as it is' \
    )
    _describe -t commands 'envshare help batch commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__batch__subcmd__cancel_commands] )) ||
_envshare__subcmd__help__subcmd__batch__subcmd__cancel_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help batch cancel commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__batch__subcmd__list_commands] )) ||
_envshare__subcmd__help__subcmd__batch__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help batch list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__batch__subcmd__results_commands] )) ||
_envshare__subcmd__help__subcmd__batch__subcmd__results_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help batch results commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__batch__subcmd__show_commands] )) ||
_envshare__subcmd__help__subcmd__batch__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help batch show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__completions_commands] )) ||
_envshare__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help completions commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__dead_commands] )) ||
_envshare__subcmd__help__subcmd__dead_commands() {
    local commands; commands=(
'list:List dead jobs, most recent first' \
'retry:Put dead jobs back in the ready queue' \
'purge:Delete dead jobs for good' \
    )
    _describe -t commands 'envshare help dead commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__dead__subcmd__list_commands] )) ||
_envshare__subcmd__help__subcmd__dead__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help dead list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__dead__subcmd__purge_commands] )) ||
_envshare__subcmd__help__subcmd__dead__subcmd__purge_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help dead purge commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__dead__subcmd__retry_commands] )) ||
_envshare__subcmd__help__subcmd__dead__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help dead retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__demo_commands] )) ||
_envshare__subcmd__help__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help demo commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__enqueue_commands] )) ||
_envshare__subcmd__help__subcmd__enqueue_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help enqueue commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__events_commands] )) ||
_envshare__subcmd__help__subcmd__events_commands() {
    local commands; commands=(
'tail:Print events as they arrive, as a consumer group member; acks what it printed' \
    )
    _describe -t commands 'envshare help events commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__events__subcmd__tail_commands] )) ||
_envshare__subcmd__help__subcmd__events__subcmd__tail_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help events tail commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__find_commands] )) ||
_envshare__subcmd__help__subcmd__find_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help find commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__import_commands] )) ||
_envshare__subcmd__help__subcmd__import_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help import commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__job_commands] )) ||
_envshare__subcmd__help__subcmd__job_commands() {
    local commands; commands=(
'show:Show a job\: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids'\'' outcome' \
    )
    _describe -t commands 'envshare help job commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__job__subcmd__show_commands] )) ||
_envshare__subcmd__help__subcmd__job__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help job show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__man_commands] )) ||
_envshare__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help man commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__pause_commands] )) ||
_envshare__subcmd__help__subcmd__pause_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help pause commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__resume_commands] )) ||
_envshare__subcmd__help__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help resume commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__sandbox_commands] )) ||
_envshare__subcmd__help__subcmd__sandbox_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help sandbox commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__serve_commands] )) ||
_envshare__subcmd__help__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help serve commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__status_commands] )) ||
_envshare__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help status commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__sync_commands] )) ||
_envshare__subcmd__help__subcmd__sync_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help sync commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__ticket_commands] )) ||
_envshare__subcmd__help__subcmd__ticket_commands() {
    local commands; commands=(
'set:Store the component verify ticket WeChat pushed to the callback (never echoed)' \
'request:Ask WeChat to push a fresh verify ticket to the platform'\''s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers'\'' own requests' \
    )
    _describe -t commands 'envshare help ticket commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__ticket__subcmd__request_commands] )) ||
_envshare__subcmd__help__subcmd__ticket__subcmd__request_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help ticket request commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__ticket__subcmd__set_commands] )) ||
_envshare__subcmd__help__subcmd__ticket__subcmd__set_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help ticket set commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__unshare_commands] )) ||
_envshare__subcmd__help__subcmd__unshare_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help unshare commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks_commands() {
    local commands; commands=(
'status:Per endpoint\: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event'\''s age and the last error' \
'dead:List or re-send deliveries that were given up' \
'verify:Check an \`Envshare-Signature\` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)' \
    )
    _describe -t commands 'envshare help webhooks commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks__subcmd__dead_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks__subcmd__dead_commands() {
    local commands; commands=(
'list:List dead deliveries, oldest first, per endpoint' \
'retry:Schedule dead deliveries again, due now, with attempts and max age starting over' \
    )
    _describe -t commands 'envshare help webhooks dead commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks__subcmd__dead__subcmd__list_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks__subcmd__dead__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help webhooks dead list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks__subcmd__dead__subcmd__retry_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks__subcmd__dead__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help webhooks dead retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks__subcmd__status_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help webhooks status commands' commands "$@"
}
(( $+functions[_envshare__subcmd__help__subcmd__webhooks__subcmd__verify_commands] )) ||
_envshare__subcmd__help__subcmd__webhooks__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'envshare help webhooks verify commands' commands "$@"
}
(( $+functions[_envshare__subcmd__import_commands] )) ||
_envshare__subcmd__import_commands() {
    local commands; commands=()
    _describe -t commands 'envshare import commands' commands "$@"
}
(( $+functions[_envshare__subcmd__job_commands] )) ||
_envshare__subcmd__job_commands() {
    local commands; commands=(
'show:Show a job\: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids'\'' outcome' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare job commands' commands "$@"
}
(( $+functions[_envshare__subcmd__job__subcmd__help_commands] )) ||
_envshare__subcmd__job__subcmd__help_commands() {
    local commands; commands=(
'show:Show a job\: env, appids, batch, state, attempts, why it died; once it finished, its batch and each of its appids'\'' outcome' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare job help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__job__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__job__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare job help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__job__subcmd__help__subcmd__show_commands] )) ||
_envshare__subcmd__job__subcmd__help__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare job help show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__job__subcmd__show_commands] )) ||
_envshare__subcmd__job__subcmd__show_commands() {
    local commands; commands=()
    _describe -t commands 'envshare job show commands' commands "$@"
}
(( $+functions[_envshare__subcmd__man_commands] )) ||
_envshare__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'envshare man commands' commands "$@"
}
(( $+functions[_envshare__subcmd__pause_commands] )) ||
_envshare__subcmd__pause_commands() {
    local commands; commands=()
    _describe -t commands 'envshare pause commands' commands "$@"
}
(( $+functions[_envshare__subcmd__resume_commands] )) ||
_envshare__subcmd__resume_commands() {
    local commands; commands=()
    _describe -t commands 'envshare resume commands' commands "$@"
}
(( $+functions[_envshare__subcmd__sandbox_commands] )) ||
_envshare__subcmd__sandbox_commands() {
    local commands; commands=()
    _describe -t commands 'envshare sandbox commands' commands "$@"
}
(( $+functions[_envshare__subcmd__serve_commands] )) ||
_envshare__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'envshare serve commands' commands "$@"
}
(( $+functions[_envshare__subcmd__status_commands] )) ||
_envshare__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'envshare status commands' commands "$@"
}
(( $+functions[_envshare__subcmd__sync_commands] )) ||
_envshare__subcmd__sync_commands() {
    local commands; commands=()
    _describe -t commands 'envshare sync commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket_commands] )) ||
_envshare__subcmd__ticket_commands() {
    local commands; commands=(
'set:Store the component verify ticket WeChat pushed to the callback (never echoed)' \
'request:Ask WeChat to push a fresh verify ticket to the platform'\''s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers'\'' own requests' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare ticket commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__help_commands] )) ||
_envshare__subcmd__ticket__subcmd__help_commands() {
    local commands; commands=(
'set:Store the component verify ticket WeChat pushed to the callback (never echoed)' \
'request:Ask WeChat to push a fresh verify ticket to the platform'\''s callback URL now (api_start_push_ticket, with ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET). At most once per 10 minutes, shared with the workers'\'' own requests' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare ticket help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__ticket__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare ticket help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__help__subcmd__request_commands] )) ||
_envshare__subcmd__ticket__subcmd__help__subcmd__request_commands() {
    local commands; commands=()
    _describe -t commands 'envshare ticket help request commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__help__subcmd__set_commands] )) ||
_envshare__subcmd__ticket__subcmd__help__subcmd__set_commands() {
    local commands; commands=()
    _describe -t commands 'envshare ticket help set commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__request_commands] )) ||
_envshare__subcmd__ticket__subcmd__request_commands() {
    local commands; commands=()
    _describe -t commands 'envshare ticket request commands' commands "$@"
}
(( $+functions[_envshare__subcmd__ticket__subcmd__set_commands] )) ||
_envshare__subcmd__ticket__subcmd__set_commands() {
    local commands; commands=()
    _describe -t commands 'envshare ticket set commands' commands "$@"
}
(( $+functions[_envshare__subcmd__unshare_commands] )) ||
_envshare__subcmd__unshare_commands() {
    local commands; commands=()
    _describe -t commands 'envshare unshare commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks_commands] )) ||
_envshare__subcmd__webhooks_commands() {
    local commands; commands=(
'status:Per endpoint\: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event'\''s age and the last error' \
'dead:List or re-send deliveries that were given up' \
'verify:Check an \`Envshare-Signature\` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare webhooks commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead_commands() {
    local commands; commands=(
'list:List dead deliveries, oldest first, per endpoint' \
'retry:Schedule dead deliveries again, due now, with attempts and max age starting over' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare webhooks dead commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__help_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__help_commands() {
    local commands; commands=(
'list:List dead deliveries, oldest first, per endpoint' \
'retry:Schedule dead deliveries again, due now, with attempts and max age starting over' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare webhooks dead help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks dead help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__list_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks dead help list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__retry_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__help__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks dead help retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__list_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks dead list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__dead__subcmd__retry_commands] )) ||
_envshare__subcmd__webhooks__subcmd__dead__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks dead retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help_commands() {
    local commands; commands=(
'status:Per endpoint\: undelivered events, attempts in flight, dead deliveries, the oldest undelivered event'\''s age and the last error' \
'dead:List or re-send deliveries that were given up' \
'verify:Check an \`Envshare-Signature\` header against a body and a secret (exit 0 valid, 1 not matching, 2 bad input)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'envshare webhooks help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__dead_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__dead_commands() {
    local commands; commands=(
'list:List dead deliveries, oldest first, per endpoint' \
'retry:Schedule dead deliveries again, due now, with attempts and max age starting over' \
    )
    _describe -t commands 'envshare webhooks help dead commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__dead__subcmd__list_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__dead__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks help dead list commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__dead__subcmd__retry_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__dead__subcmd__retry_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks help dead retry commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__help_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks help help commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__status_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks help status commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__help__subcmd__verify_commands] )) ||
_envshare__subcmd__webhooks__subcmd__help__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks help verify commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__status_commands] )) ||
_envshare__subcmd__webhooks__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks status commands' commands "$@"
}
(( $+functions[_envshare__subcmd__webhooks__subcmd__verify_commands] )) ||
_envshare__subcmd__webhooks__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'envshare webhooks verify commands' commands "$@"
}

if [ "$funcstack[1]" = "_envshare" ]; then
    _envshare "$@"
else
    compdef _envshare envshare
fi
