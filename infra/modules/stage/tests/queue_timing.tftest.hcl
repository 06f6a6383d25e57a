# `terraform test` of the stage module (scripts/infra.sh test-modules, part
# of make tf-check): the queue's visibility timeout, the function timeout,
# the batch size and the batching window must agree, and an inconsistent
# setting fails the plan. Planned against a mocked AWS provider: no
# credentials, no network.

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
}

variables {
  name          = "sluice-check-profile"
  stage         = "profile"
  account_id    = "123456789012"
  zip_path      = "main.tf" # only its hash is read
  code_version  = "check"
  input_bucket  = "in"
  output_bucket = "out"
}

run "visibility_defaults_to_six_function_timeouts_plus_the_batching_window" {
  command = plan
  variables {
    timeout                 = 20
    batch_size              = 50
    maximum_batching_window = 5
  }
  assert {
    condition     = aws_sqs_queue.this.visibility_timeout_seconds == 6 * 20 + 5
    error_message = "visibility timeout ${aws_sqs_queue.this.visibility_timeout_seconds} s, want 6 x 20 + 5 = 125 s"
  }
  assert {
    condition     = aws_lambda_function.this.timeout == 20 && aws_lambda_event_source_mapping.this.batch_size == 50
    error_message = "the function timeout and the batch size are passed through"
  }
}

run "visibility_without_a_window_is_six_function_timeouts" {
  command = plan
  assert {
    condition     = aws_sqs_queue.this.visibility_timeout_seconds == 6 * 300
    error_message = "visibility timeout ${aws_sqs_queue.this.visibility_timeout_seconds} s, want 6 x 300 s"
  }
}

run "a_larger_visibility_timeout_is_kept" {
  command = plan
  variables {
    timeout            = 60
    visibility_timeout = 3600
  }
  assert {
    condition     = aws_sqs_queue.this.visibility_timeout_seconds == 3600
    error_message = "an explicit visibility timeout above the minimum is used as is"
  }
}

run "a_visibility_timeout_of_only_six_timeouts_with_a_window_is_refused" {
  command = plan
  variables {
    timeout                 = 20
    maximum_batching_window = 5
    visibility_timeout      = 120
  }
  expect_failures = [var.visibility_timeout]
}

run "a_visibility_timeout_below_six_timeouts_is_refused" {
  command = plan
  variables {
    timeout            = 60
    visibility_timeout = 60
  }
  expect_failures = [var.visibility_timeout]
}

run "a_batch_above_ten_without_a_batching_window_is_refused" {
  command = plan
  variables {
    batch_size = 100
  }
  expect_failures = [var.batch_size]
}

run "a_batching_window_above_five_minutes_is_refused" {
  command = plan
  variables {
    maximum_batching_window = 301
  }
  expect_failures = [var.maximum_batching_window]
}
