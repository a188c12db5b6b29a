"""`memtypes check --host`: the hosts of every family that takes hosts."""


def test_host_option_is_the_hosts_param_of_every_family_that_takes_hosts(capsys):
    from memtypes.cli import main
    assert main(["check", "--family", "passthrough", "--kernel", "6.17", "--host", "grace", "--json", "-"]) == 0
    by_option = capsys.readouterr().out
    assert main(["check", "--family", "passthrough", "--kernel", "6.17", "--param", "passthrough.hosts=[grace]",
                 "--json", "-"]) == 0
    assert capsys.readouterr().out == by_option
    assert main(["check", "--family", "passthrough", "--kernel", "6.17", "--host", "grace,armv8.0", "--json", "-"]) == 0
    assert capsys.readouterr().out != by_option       # armv8.0 adds its initial state
    assert main(["check", "--family", "dma-type1", "--host", "grace"]) == 2
    assert "no family being checked takes hosts" in capsys.readouterr().err
