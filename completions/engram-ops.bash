#!/usr/bin/env bash

# This function joins an array using a character passed in
# e.g. ARRAY=(one two three) -> join_by ":" ${ARRAY[@]} -> "one:two:three"
function join_by { local IFS="$1"; shift; echo "$*"; }

_engram-ops_autocomplete()
{

  local cur="${COMP_WORDS[COMP_CWORD]}" opts normalizedCommand colonPrefix IFS=$' \t\n'
  COMPREPLY=()

  local commands="
autocomplete --refresh-cache
backup:full --json --verbose --quiet --data-dir --repo --passphrase-file --space --compression --hash --label --lock-wait --part-size --upload-concurrency --storage-class --sse --sse-kms-key-id
backup:incremental --json --verbose --quiet --data-dir --repo --passphrase-file --space --compression --hash --label --lock-wait --part-size --upload-concurrency --storage-class --sse --sse-kms-key-id
backup:list --json --verbose --quiet --repo --passphrase-file
backup:prune --json --verbose --quiet --repo --passphrase-file --keep-last --keep-daily --keep-weekly --keep-monthly --keep-within --min-full --dry-run --yes --lock-wait
backup:show --json --verbose --quiet --repo --passphrase-file
backup:verify --json --verbose --quiet --repo --passphrase-file --latest --all --level
engine:generate --json --verbose --quiet --data-dir --spaces --space --episodes --size --seed --start --window --append --no-sync
engine:serve --json --verbose --quiet --data-dir --host --port --pid-file --api-key --truncate-torn
engine:stats --json --verbose --quiet --data-dir --space
engine:waldump --json --verbose --quiet --data-dir --space --from --to --type --stats
help --nested-commands
repo:check --json --verbose --quiet --repo --passphrase-file --min-free --max-skew
repo:info --json --verbose --quiet --repo --passphrase-file
repo:init --json --verbose --quiet --repo --passphrase-file --compression --encryption
repo:key:change --json --verbose --quiet --repo --passphrase-file --new-passphrase-file
restore --json --verbose --quiet --repo --passphrase-file --to --space --yes --dry-run --no-sync --latest
restore:pitr --json --verbose --quiet --repo --passphrase-file --to --space --yes --dry-run --no-sync --target-time --target-seq --target-exclusive
"

  function __trim_colon_commands()
  {
    # Turn $commands into an array
    commands=("${commands[@]}")

    if [[ -z "$colonPrefix" ]]; then
      colonPrefix="$normalizedCommand:"
    fi

    # Remove colon-word prefix from $commands
    commands=( "${commands[@]/$colonPrefix}" )

    for i in "${!commands[@]}"; do
      if [[ "${commands[$i]}" == "$normalizedCommand" ]]; then
        # If the currently typed in command is a topic command we need to remove it to avoid suggesting it again
        unset "${commands[$i]}"
      else
        # Trim subcommands from each command
        commands[$i]="${commands[$i]%%:*}"
      fi
    done
  }

  if [[ "$cur" != "-"* ]]; then
    # Command
    __COMP_WORDS=( "${COMP_WORDS[@]:1}" )

    # The command typed by the user but separated by colons (e.g. "mycli command subcom" -> "command:subcom")
    normalizedCommand="$( printf "%s" "$(join_by ":" "${__COMP_WORDS[@]}")" )"

    # The command hirarchy, with colons, leading up to the last subcommand entered (e.g. "mycli com subcommand subsubcom" -> "com:subcommand:")
    colonPrefix="${normalizedCommand%"${normalizedCommand##*:}"}"

    if [[ -z "$normalizedCommand" ]]; then
      # If there is no normalizedCommand yet the user hasn't typed in a full command
      # So we should trim all subcommands & flags from $commands so we can suggest all top level commands
      opts=$(printf "%s " "${commands[@]}" | grep -Eo '^[a-zA-Z0-9_-]+')
    else
      # Filter $commands to just the ones that match the $normalizedCommand and turn into an array
      commands=( $(compgen -W "$commands" -- "${normalizedCommand}") )
      # Trim higher level and subcommands from the subcommands to suggest
      __trim_colon_commands "$colonPrefix"

      opts=$(printf "%s " "${commands[@]}") # | grep -Eo '^[a-zA-Z0-9_-]+'
    fi
  else 
    # Flag

    # The full CLI command separated by colons (e.g. "mycli command subcommand --fl" -> "command:subcommand")
    # This needs to be defined with $COMP_CWORD-1 as opposed to above because the current "word" on the command line is a flag and the command is everything before the flag
    normalizedCommand="$( printf "%s" "$(join_by ":" "${COMP_WORDS[@]:1:($COMP_CWORD - 1)}")" )"

    # The line below finds the command in $commands using grep
    # Then, using sed, it removes everything from the found command before the --flags (e.g. "command:subcommand:subsubcom --flag1 --flag2" -> "--flag1 --flag2")
    opts=$(printf "%s " "${commands[@]}" | grep "${normalizedCommand}" | sed -n "s/^${normalizedCommand} //p")
  fi

  COMPREPLY=($(compgen -W "$opts" -- "${cur}"))
}

complete -F _engram-ops_autocomplete engram-ops
