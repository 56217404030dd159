"""hypervisor_kvm: the workload in a QEMU/KVM guest with its own kernel (Kata-class).

plugin.py: hooks; backend.py: the verbs; vmshim.py: the per-VM process that owns QEMU;
agent.py + wire.py: the guest agent and its frames; guest.py: kernel and initramfs.
"""
