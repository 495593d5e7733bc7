# Builds the anyguard gateway AMI: Debian 12 with the static binary, the
# hardened systemd unit and the first-boot script (images/provision.sh).
# docs/aws.md says how to build and boot it:
#
#   make build
#   packer build -var region=eu-west-1 images/packer/anyguard.pkr.hcl
#
# Run from the repository root (the paths below are relative to it).
# Debian's packer 1.6 validates it in `make test` (e2e/images_test.go).

variable "region" {
  type        = string
  description = "AWS region to build the AMI in (copy it to the others with ami_regions)."
  default     = "us-east-1"
}

variable "ami_regions" {
  type        = list(string)
  description = "Further regions to copy the finished AMI to."
  default     = []
}

variable "instance_type" {
  type        = string
  description = "Instance type of the build instance (any type that boots Debian 12 amd64)."
  default     = "t3.small"
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the build instance; empty: the default VPC's."
  default     = ""
}

variable "binary" {
  type        = string
  description = "The static anyguard binary (`make build` writes bin/anyguard)."
  default     = "bin/anyguard"
}

variable "version" {
  type        = string
  description = "Version recorded in the AMI's name and tags."
  default     = "dev"
}

locals {
  stamp = regex_replace(timestamp(), "[- TZ:]", "")
}

# Debian 12 from Debian's own AWS account (136693071363), newest first.
source "amazon-ebs" "debian12" {
  region          = var.region
  ami_regions     = var.ami_regions
  instance_type   = var.instance_type
  subnet_id       = var.subnet_id
  ssh_username    = "admin"
  ami_name        = "anyguard-${var.version}-${local.stamp}"
  ami_description = "anyguard userspace WireGuard gateway ${var.version} on Debian 12"

  source_ami_filter {
    owners      = ["136693071363"]
    most_recent = true
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }

  # IMDSv2-only is set in the launch template (docs/aws.md): Debian's
  # packer 1.6 knows no metadata_options, and the first-boot script asks
  # for a token anyway.

  encrypt_boot = true

  tags = {
    Name    = "anyguard-${var.version}"
    Project = "anyguard"
    Version = var.version
  }
}

build {
  sources = ["source.amazon-ebs.debian12"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/anyguard"]
  }
  provisioner "file" {
    source      = var.binary
    destination = "/tmp/anyguard/anyguard"
  }
  provisioner "file" {
    source      = "images/anyguard.service"
    destination = "/tmp/anyguard/anyguard.service"
  }
  provisioner "file" {
    source      = "images/anyguard-bootstrap"
    destination = "/tmp/anyguard/anyguard-bootstrap"
  }
  provisioner "file" {
    source      = "images/provision.sh"
    destination = "/tmp/anyguard/provision.sh"
  }
  provisioner "shell" {
    inline = [
      "sudo sh /tmp/anyguard/provision.sh /tmp/anyguard",
      "rm -rf /tmp/anyguard",
      # The AMI boots fresh: cloud-init runs the user data again.
      "sudo cloud-init clean --logs",
    ]
  }
}
