"""Operations: ``!emr doctor``, which checks the whole chain and says what to fix."""
