"""Booting a published disk the way Lima does and asking the guest what Lima needs.

machine: the QEMU command line (firmware, accelerator, devices), planned without running anything.
seed: the NoCloud `cidata` seed, shaped like the one Lima writes.
checks: what Lima needs from a guest, as commands run over ssh and how each answer is judged.
tools: the host programs all this needs, and the Debian package of each.
guest: the acting part: start QEMU, wait for ssh, run the checks, mount over reverse sshfs.
verdict: a boot's result for its caller, or its failure as one line.
"""
