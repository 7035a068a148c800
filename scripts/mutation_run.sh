#!/usr/bin/env bash
# The mutation run of issue 20: the safety code of six modules, each against the tests that cover it.
# Usage: bash scripts/mutation_run.sh [SAMPLE]   (mutants per module drawn at random; 0: all; default 10)
# Works on copies of the repository (scripts/mutate.py never edits the files themselves). Minutes per module.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
R=tests/pipeline/hostile/test_reliability.py
S=tests/pipeline/hostile/test_reliability_s3.py
F_DS="_check_rel_path,Manifest.__post_init__,Manifest.owned_files,read_manifest,manifest_digest,_load_manifest,PreparedDataset.read,PreparedDataset.replaced,PreparedDataset.check_unchanged,PreparedDataset._shard_mismatch,PreparedDataset._check_rows,PreparedDataset.iter_batches,PreparedDataset.verify,PreparedDataset.local_shard_files,PreparedDataset.read_shard"
F_ST="is_url,local_path,normalize,join,parent,basename,relative_to,remove,remove_tree,write_bytes_atomic,storage_options,filesystem,list_files"
F_MA="resolve_output,_dangling_link_on,_symlinks_inside,check_output_dir,_check_output_dir,_nesting_error,_real,foreign_files,run_prefix,make_work_dir,_is_stale,remove_stale_runs,_failed_at,build_manifest,_delete_owned,_finish_work_dir,_old_output,_publish_local,_publish_remote"
F_RD="source_label,expand_inputs,_jsonl_splits,_iter_lines,_starts_with_bom,read_jsonl"
F_MS="build_conversation,_message,_tool_call,_tool_calls,_record_list,_string"
m() { python scripts/mutate.py --sample "$N" "$@"; }
m --module pipelines/manifest.py --functions "$F_MA" --timeout 400 --tests "$R -k 'killed_while_publishing_leaves or symlink or long_output or manifest_listing or inside_the_output or appears_in_the_output or between_the_replacement or build_manifest or failed_runs_keep'"
m --module pipelines/signals.py --timeout 300 --tests "tests/pipeline/hostile/test_signals.py $S::test_sigterm_removes_the_s3_run_folder_and_the_progress_folder"
m --module im_data/dataset.py --functions "$F_DS" --timeout 300 --tests "$R $S::test_a_tampered_shard_read_from_s3_fails_its_sha256 -k 'reader_detects or shard_that_disagrees or manifest_listing or tampered'"
m --module im_data/storage.py --functions "$F_ST" --timeout 300 --tests "$S $R -k 's3 or symlink or long_output or tampered or unusable or dies or sigterm or failed_copy'"
m --module pipelines/read.py --functions "$F_RD" --timeout 300 --tests "tests/pipeline/hostile/test_hostile_inputs.py $R::test_an_input_that_shrinks_or_vanishes_while_read_is_read_errors $R::test_a_glob_that_matches_unreadable_kinds_says_so tests/pipeline/test_read.py -k 'not corpus'"
m --module im_data/messages.py --functions "$F_MS" --timeout 200 --tests "tests/core/test_messages.py tests/core/test_errors.py $R::test_message_fields_of_the_wrong_type_are_rejected $R::test_a_template_that_renders_call_names_but_not_arguments_is_unrendered_field"
